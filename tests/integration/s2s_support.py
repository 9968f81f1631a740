"""Two (or more) pubsubd servers federated over loopback, and a raw s2s socket for bad peers."""

from __future__ import annotations

import socket
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from harness import RawSocket, ServerProcess

from . import im_helpers

C = "{jabber:client}"
SERVER_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
    "xmlns:stream='http://etherx.jabber.org/streams' from='{from_}' to='{to}' version='1.0'>"
)


def federated_server(workdir: Path, domain: str, s2s_port: int, routes: dict[str, str],
                     s2s: dict[str, Any] | None = None, **kw: Any) -> ServerProcess:
    """A server for ``domain`` with an s2s listener on ``s2s_port`` and static routes."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = {"routes": routes, "connect_timeout": 2.0, "handshake_timeout": 4.0, **(s2s or {})}
    proc = ServerProcess(workdir, domain=domain, extra={"s2s": settings}, **kw)
    proc.config["listeners"].append({"kind": "s2s", "address": "127.0.0.1", "port": s2s_port})
    proc.config_path.write_text(yaml.safe_dump(proc.config))
    proc.s2s_port = s2s_port  # type: ignore[attr-defined]
    return proc


class Inbox(im_helpers.Inbox):
    """The shared inbox, with the longer default wait federation needs (a second server)."""

    async def wait(self, pred: Callable[[ET.Element], bool],
                   timeout: float = 10.0) -> ET.Element:  # noqa: ASYNC109
        return await super().wait(pred, timeout)


def stanza(kind: str, type_: str | None = None, from_: str | None = None
           ) -> Callable[[ET.Element], bool]:
    def match(el: ET.Element) -> bool:
        return (el.tag == f"{C}{kind}" and el.get("type") == type_
                and (from_ is None or (el.get("from") or "").split("/")[0] == from_))
    return match


def error_condition(el: ET.Element) -> str | None:
    error = el.find(f"{C}error")
    if error is None:
        return None
    for child in error:
        namespace, _, local = child.tag[1:].partition("}")
        if namespace == "urn:ietf:params:xml:ns:xmpp-stanzas" and local != "text":
            return local
    return None


class RawPeer(RawSocket):
    """A hand-driven s2s connection to a server, playing a (possibly lying) peer server."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(("127.0.0.1", port),
                                                                            timeout=10)
        self.buffer = b""

    def send(self, data: str) -> None:
        self.sock.sendall(data.encode())

    def open(self, from_: str, to: str) -> str:
        self.send(SERVER_HEADER.format(from_=from_, to=to))
        return self.read_until(b"</stream:features>")

    def starttls(self, from_: str, to: str) -> str:
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(b"<proceed")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname=to)
        self.buffer = b""
        return self.open(from_, to)



def silent_listener() -> tuple[socket.socket, int]:
    """A socket that accepts TCP connections (in the kernel's backlog) and never speaks."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock, int(sock.getsockname()[1])


__all__ = ["federated_server", "Inbox", "stanza", "error_condition", "RawPeer",
           "silent_listener"]
