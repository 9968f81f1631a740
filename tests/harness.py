"""Start the real server as a subprocess on free loopback ports, and connect real clients.

Tests drive it from outside exactly as users do: slixmpp clients (asyncio) and raw sockets.
The server process can be stopped gracefully, killed with SIGKILL and restarted on the same
data directory, to test durability.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from pubsubd.ports_file import read as read_ports

ROOT = Path(__file__).resolve().parent.parent


_RESERVED: list[socket.socket] = []


def reserved_port() -> int:
    """A loopback port held for the rest of the test run, for an address that must be known
    before its server starts (routes between federated servers, a peer's config, a public URL).

    A port merely free when asked could be handed to someone else before its server binds it.
    This one stays bound (never listening) by a socket with SO_REUSEADDR: the kernel never
    gives a bound port out as an ephemeral one, and a bind without SO_REUSEADDR is refused, so
    nothing else can take it; the server meant to listen there binds it beside this socket with
    SO_REUSEADDR (trio, Prosody, ejabberd and PostgreSQL all set it), which Linux allows while
    no one listens on it. Until that server listens, connecting is refused. A server's own
    listeners that nothing needs to know in advance use port 0 and the ports file instead.
    """
    sock = _hold(0)
    assert sock is not None
    _RESERVED.append(sock)
    return int(sock.getsockname()[1])


def _hold(port: int) -> socket.socket | None:
    """A socket bound to ``port`` (0: any) on loopback, never listening; None if taken."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        if not port:
            raise
        return None
    return sock


STORAGE_ENV = "PUBSUBD_TEST_STORAGE"


def test_storage(workdir: Path) -> dict[str, Any]:
    """The ``storage`` settings of a test server: SQLite under ``workdir``, or with
    ``PUBSUBD_TEST_STORAGE=postgres`` a fresh database of the tests' PostgreSQL cluster."""
    if os.environ.get(STORAGE_ENV, "sqlite") == "postgres":
        from tests.pg import new_database

        return {"url": new_database()}
    return {"path": str(workdir / "var" / "pubsubd.sqlite3")}


class ServerProcess:
    """One pubsubd process with its own config and data directory.

    Listeners configured with port 0 bind an ephemeral port; the server writes the bound ports
    to ``ports.json`` once every listener accepts, and :meth:`start` reads them into
    ``c2s_port``, ``tls_port``, ``metrics_port`` and ``ports`` (``{"kind": port,
    "kind:index": port}``).
    """

    def __init__(self, workdir: Path, *, domain: str = "localhost",
                 extra: dict[str, Any] | None = None, registration: bool = True) -> None:
        self.workdir = workdir
        self.domain = domain
        self.c2s_port = 0
        self.tls_port = 0
        self.metrics_port = 0  # a test adding a metrics listener with this port gets port 0
        self.ports: dict[str, int] = {}
        config: dict[str, Any] = {
            "domains": [domain],
            "listeners": [
                {"kind": "c2s", "address": "127.0.0.1", "port": 0},
                {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
            ],
            "data_dir": str(workdir / "var"),
            "storage": test_storage(workdir),
            "admins": [f"admin@{domain}"],
            "registration": {"enabled": registration},
            "log": {"level": "DEBUG"},
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.config = config
        self.config_path = workdir / "pubsubd.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.ports_path = workdir / "ports.json"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server; return once every listener accepts connections."""
        if self.ports:
            self._pin_ports()
        self.ports_path.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pubsubd", "run", "--config", str(self.config_path),
             "--ports-file", str(self.ports_path)],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        self.await_ports(timeout)

    def await_ports(self, timeout: float = 15.0) -> None:
        """Wait until the server has written its ports file, then read it. After an in-place
        restart (the admin ``restart`` command), delete the file first, then call this."""
        assert self.proc is not None
        # The server writes the file (atomically) only once every listener is accepting; polling
        # for it waits on that event. The short interval bounds the latency, not the outcome.
        deadline = time.monotonic() + timeout
        while not self.ports_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                self.proc.kill()  # a server that failed its start must not outlive the test
                self.proc.wait()
                raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")
            time.sleep(0.01)
        self.ports = read_ports(self.ports_path)
        self.c2s_port = self.ports.get("c2s", self.c2s_port)
        self.tls_port = self.ports.get("c2s_tls", self.tls_port)
        self.metrics_port = self.ports.get("metrics", self.metrics_port)

    def port(self, kind: str) -> int:
        """The bound port of the first listener of ``kind``."""
        return self.ports[kind]

    def _pin_ports(self) -> None:
        """A restart binds the ports the previous run had: clients reconnect where they were
        (SO_REUSEADDR lets the listener rebind while old connections linger in TIME_WAIT)."""
        for i, spec in enumerate(self.config["listeners"]):
            bound = self.ports.get(f"{spec['kind']}:{i}")
            if not spec.get("port") and bound:
                spec["port"] = bound
        self.config_path.write_text(yaml.safe_dump(self.config))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        """Return once ``text`` has appeared ``count`` times in the server's log: the event a
        test waits for when nothing on the wire shows it. (From asyncio code, run it with
        ``asyncio.to_thread``.)"""
        deadline = time.monotonic() + timeout
        while self.log_path.read_text(errors="replace").count(text) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not logged {count} times:\n{self.log()}")
            time.sleep(0.01)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self, *, hard: bool = False) -> None:
        """Stop (or kill) and start again on the same ports; the ports the first run bound
        stay held (see :func:`reserved_port`) until the new process has bound them again."""
        self.kill() if hard else self.stop()
        held = [_hold(port) for port in set(self.ports.values())]
        try:
            self.start()
        finally:
            for sock in held:
                if sock is not None:
                    sock.close()

    def cli(self, *args: str, input_: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pubsubd", *args, "--config", str(self.config_path)],
            cwd=self.workdir, capture_output=True, text=True, input=input_, check=check, timeout=60,
        )

    def control(self, op: str, **args: Any) -> Any:
        """One request on the server's control socket (what ``pubsubd admin`` sends)."""
        from pubsubd.admin_cli import call

        socket_path = self.config.get("control", {}).get("socket", "var/control.sock")
        return call(self.workdir / socket_path, op, args)

    def refresh_feed(self, url: str) -> Any:
        """Poll a feed now; return once its new entries have been published (the control
        socket answers after the poll, waiting first for a scheduled poll of that feed already
        under way). From asyncio code, run it with ``asyncio.to_thread``."""
        return self.control("feeds.refresh", url=url)

    def add_user(self, local: str, password: str = "password1") -> str:
        jid = f"{local}@{self.domain}"
        self.cli("user", "add", jid, "--password", password)
        return jid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --- slixmpp clients ------------------------------------------------------------------------

def make_client(jid: str, password: str, plugins: Iterable[str] = ("xep_0030", "xep_0199")) -> Any:
    import slixmpp

    client = slixmpp.ClientXMPP(jid, password)
    for plugin in plugins:
        client.register_plugin(plugin)
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = ssl.CERT_NONE
    client.enable_direct_tls = False
    return client


async def connect(server: ServerProcess, jid: str, password: str = "password1",
                  plugins: Iterable[str] = ("xep_0030", "xep_0199"), *, presence: bool = True,
                  timeout: float = 15.0) -> Any:
    """A slixmpp client, connected, authenticated and bound (with initial presence if asked)."""
    client = make_client(jid, password, plugins)
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_start(_: Any) -> None:
        if not started.done():
            started.set_result(True)

    def on_fail(*_: Any) -> None:
        if not started.done():
            started.set_exception(AuthenticationFailed(jid))

    client.add_event_handler("session_start", on_start)
    client.add_event_handler("failed_all_auth", on_fail)
    client.connect(host="127.0.0.1", port=server.c2s_port)
    await asyncio.wait_for(started, timeout)
    if presence:
        client.send_presence()
        await round_trip(client)  # the presence has been processed (and broadcast)
    return client


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds, checking often: for state with no event to wait on
    (a counter another thread updates). Not a sleep: it returns as soon as the state is there."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def round_trip(client: Any, to: str | None = None, timeout: float = 10.0) -> None:
    """A ping (XEP-0199) to the server, or to ``to``, and its answer (a result or an error).

    A server processes each stream's stanzas in order and delivers to a client in order (RFC
    6120 §10.1): once the answer is back, everything this client sent before has been handled,
    and everything the server had sent it by then has arrived. Over federation, pinging the
    remote domain flushes the server-to-server stream the same way. This is how a test waits for
    "processed", and what it does before asserting that something did NOT arrive.
    """
    from slixmpp.exceptions import IqError
    from slixmpp.xmlstream import ET

    iq = client.Iq()
    iq["type"] = "get"
    iq["to"] = to or client.boundjid.domain
    iq.xml.append(ET.Element("{urn:xmpp:ping}ping"))
    try:
        await iq.send(timeout=timeout)
    except IqError:
        pass  # an error answer is an answer: the round trip is complete


async def disconnect(*clients: Any) -> None:
    """Close each client's stream and wait (bounded) until its connection is gone.

    slixmpp's ``disconnect()`` returns the task that completes when the stream has ended; that,
    not the client's ``disconnected`` attribute, is what to wait on when several clients close
    at once.
    """
    endings = [client.disconnect() for client in clients]
    for ending in endings:
        try:
            await asyncio.wait_for(ending, 5)
        except Exception:  # noqa: BLE001 - already gone, or the server closed first
            pass


class AuthenticationFailed(Exception):
    pass


def run(coro: Any) -> Any:
    """Run an asyncio scenario from a synchronous test."""
    return asyncio.run(coro)


# --- raw sockets ---------------------------------------------------------------------------

STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)


class RawSocket:
    """Reading an XMPP stream by hand: up to a marker, or everything until the peer closes."""

    sock: socket.socket | ssl.SSLSocket
    buffer: bytes

    def read_until(self, marker: bytes, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{marker!r} not received; got {self.buffer!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer!r}")
            self.buffer += chunk
        idx = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:idx], self.buffer[idx:]
        return out.decode(errors="replace")

    def read_all(self, timeout: float = 5.0) -> str:
        """Everything until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection not closed; got {self.buffer!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                out, self.buffer = self.buffer, b""
                return out.decode(errors="replace")
            self.buffer += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class RawClient(RawSocket):
    """A plain socket speaking XMPP by hand, for bad input and exact error checks."""

    def __init__(self, server: ServerProcess, *, tls: bool = False) -> None:
        self.server = server
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", server.tls_port if tls else server.c2s_port), timeout=10
        )
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock, server_hostname=server.domain)
        self.buffer = b""

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def open(self, domain: str | None = None) -> str:
        self.send(STREAM_HEADER.format(domain=domain or self.server.domain))
        return self.read_until(b"</stream:features>")

    def starttls(self) -> None:
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(b"<proceed")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.server.domain)
        self.buffer = b""

    def login(self, local: str, password: str = "password1", resource: str = "raw") -> str:
        """STARTTLS, SASL PLAIN, bind; returns the bound full JID."""
        import base64

        self.open()
        self.starttls()
        self.open()
        token = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  f"{token}</auth>")
        self.read_until(b"<success")
        self.open()
        self.send(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        reply = self.read_until(b"</iq>")
        return reply.split("<jid>")[1].split("</jid>")[0]

