"""A deliberately small XMPP client over raw asyncio sockets, for load generation only.

No XMPP library: the benchmark must cost the same on the client side whichever server it
measures, and must not hide server behaviour behind a library's retries. Incoming XML is cut
into top-level stanzas with lxml's pull parser (a few microseconds per stanza, events only for
the stanza namespaces); outgoing XML is formatted by hand.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections import deque
from dataclasses import dataclass

from lxml import etree

CLIENT_NS = "jabber:client"
STREAM_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
REGISTER_NS = "jabber:iq:register"
PING_NS = "urn:xmpp:ping"

FEATURES = f"{{{STREAM_NS}}}features"
STREAM_ERROR = f"{{{STREAM_NS}}}error"
SUCCESS = f"{{{SASL_NS}}}success"
IQ = f"{{{CLIENT_NS}}}iq"
MESSAGE = f"{{{CLIENT_NS}}}message"
PRESENCE = f"{{{CLIENT_NS}}}presence"
BODY = f"{{{CLIENT_NS}}}body"

# Whatever a server sends at the top level of a stream is in one of these namespaces.
TOP_LEVEL_TAGS = [f"{{{ns}}}*" for ns in (
    CLIENT_NS, STREAM_NS, SASL_NS, "urn:ietf:params:xml:ns:xmpp-tls", "urn:xmpp:sm:3")]

READ_SIZE = 65536
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class XmppError(Exception):
    """The server refused or broke the exchange the benchmark expected."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a server listens and which domain it serves."""

    host: str
    port: int
    domain: str


def stream_header(domain: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='{CLIENT_NS}' "
        f"xmlns:stream='{STREAM_NS}' version='1.0'>"
    ).encode()


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")


class Connection:
    """One client stream: send bytes, receive whole top-level elements."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 target: Target) -> None:
        self.reader = reader
        self.writer = writer
        self.target = target
        self.jid = ""
        self.closed = False
        self._pending: deque[etree._Element] = deque()
        self._new_parser()

    @classmethod
    async def open(cls, target: Target, source: str | None = None,
                   deadline: float = 30.0) -> Connection:
        sock: socket.socket | None = None
        if source is not None:
            # Spread clients over 127.0.0.x so no single source address runs out of ports;
            # the port is chosen at connect() time, not at bind() time.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (target.host, target.port)),
                deadline)
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
        else:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port, limit=READ_SIZE), deadline)
        writer.transport.set_write_buffer_limits(high=1 << 20)
        return cls(reader, writer, target)

    # --- parsing -----------------------------------------------------------------------------

    def _new_parser(self) -> None:
        # Events only for elements in the namespaces a top-level element of these streams is
        # in: a pubsub notification's payload (other namespaces) costs no Python per element,
        # so one load process can take in the notifications of a fan-out faster than the
        # server under test sends them.
        self._parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False,
                                           huge_tree=False, tag=TOP_LEVEL_TAGS)
        self._root: etree._Element | None = None

    def _feed(self, data: bytes) -> None:
        self._parser.feed(data)
        root = self._root
        for event, el in self._parser.read_events():
            if root is None:
                root = self._root = el  # the first event: the stream's opening tag
                continue
            if event == "start":
                continue
            parent = el.getparent()
            if parent is root:
                self._pending.append(el)
                # keep the stream root from growing
                while el.getprevious() is not None:
                    del parent[0]
            elif el is root:
                self.closed = True

    def take_ready(self) -> list[etree._Element]:
        """Stanzas already parsed, without waiting."""
        out = list(self._pending)
        self._pending.clear()
        return out

    async def receive_some(self) -> list[etree._Element]:
        """Wait for at least one read from the socket; return what it completed."""
        if self._pending:
            return self.take_ready()
        data = await self.reader.read(READ_SIZE)
        if not data:
            self.closed = True
            raise XmppError("connection closed by the server")
        self._feed(data)
        return self.take_ready()

    async def count_raw(self, marker: bytes, wanted: int) -> float:
        """Read on without parsing until ``marker`` has arrived ``wanted`` times; returns the
        monotonic time of the read that brought the last one.

        For a subscriber of a fan-out, whose only task left is to take in a known number of
        notifications: counting a text each one carries once costs the load generator almost
        nothing, where parsing them cost it more CPU than the fastest server spent sending
        them. The stream is parsed no further (whatever follows is only read and dropped);
        bytes the parser already took are not counted, so call it before the stanzas come."""
        got, last, carry = 0, 0.0, b""
        keep = len(marker) - 1  # a marker may straddle two reads
        while got < wanted:
            data = await self.reader.read(READ_SIZE)
            if not data:
                self.closed = True
                raise XmppError(f"connection closed by the server after {got} of {wanted}")
            window = carry + data
            found = window.count(marker)
            if found:
                got += found
                last = time.monotonic()
            # The carried bytes cannot hold a whole marker, so none is counted twice.
            carry = window[-keep:] if keep else b""
        return last

    async def next_element(self, deadline: float = 30.0) -> etree._Element:
        async with asyncio.timeout(deadline):
            while not self._pending:
                if self.closed:
                    raise XmppError("stream closed by the server")
                data = await self.reader.read(READ_SIZE)
                if not data:
                    self.closed = True
                    raise XmppError("connection closed by the server")
                self._feed(data)
        el = self._pending.popleft()
        if el.tag == STREAM_ERROR:
            raise XmppError("stream error: " + ",".join(etree.QName(c).localname for c in el))
        return el

    async def wait_for(self, tag: str, ident: str | None = None,
                       deadline: float = 30.0) -> etree._Element:
        """Skip unrelated stanzas until ``tag`` (with id ``ident``) arrives."""
        async with asyncio.timeout(deadline):
            while True:
                el = await self.next_element(deadline)
                if el.tag == tag and (ident is None or el.get("id") == ident):
                    return el

    # --- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def flush(self) -> None:
        await self.writer.drain()

    # --- negotiation -------------------------------------------------------------------------

    async def _restart(self, deadline: float) -> etree._Element:
        self._new_parser()
        self.send(stream_header(self.target.domain))
        features = await self.next_element(deadline)
        if features.tag != FEATURES:
            raise XmppError(f"expected stream features, got {features.tag}")
        return features

    async def login(self, username: str, password: str, resource: str,
                    deadline: float = 30.0) -> str:
        """SASL PLAIN (RFC 4616) and resource binding (RFC 6120 §7); returns the full JID."""
        features = await self._restart(deadline)
        mechanisms = [m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")]
        if "PLAIN" not in mechanisms:
            raise XmppError(f"PLAIN not offered (offered: {mechanisms})")
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>".encode())
        outcome = await self.next_element(deadline)
        if outcome.tag != SUCCESS:
            raise XmppError(f"authentication of {username} failed: "
                            + ",".join(etree.QName(c).localname for c in outcome))
        await self._restart(deadline)
        self.send(f"<iq type='set' id='bind'><bind xmlns='{BIND_NS}'><resource>"
                  f"{escape(resource)}</resource></bind></iq>".encode())
        reply = await self.wait_for(IQ, "bind", deadline)
        jid = reply.findtext(f"{{{BIND_NS}}}bind/{{{BIND_NS}}}jid")
        if reply.get("type") != "result" or not jid:
            raise XmppError(f"bind failed for {username}")
        self.jid = jid
        return jid

    async def register(self, username: str, password: str, deadline: float = 60.0) -> None:
        """XEP-0077 in-band registration on a fresh stream; 'conflict' counts as done."""
        await self._restart(deadline)
        self.send(f"<iq type='set' id='reg'><query xmlns='{REGISTER_NS}'><username>"
                  f"{escape(username)}</username><password>{escape(password)}</password>"
                  f"</query></iq>".encode())
        reply = await self.wait_for(IQ, "reg", deadline)
        if reply.get("type") == "result":
            return
        if reply.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}conflict") is not None:
            return
        raise XmppError(f"registration of {username} failed: {etree.tostring(reply)[:300]!r}")

    async def iq(self, payload: str, to: str | None = None, type_: str = "get",
                 ident: str = "q", deadline: float = 60.0) -> etree._Element:
        """Send one IQ and wait for its answer (result or error)."""
        to_attr = f" to='{escape(to)}'" if to else ""
        self.send(f"<iq type='{type_}' id='{ident}'{to_attr}>{payload}</iq>".encode())
        return await self.wait_for(IQ, ident, deadline)

    async def ping(self, ident: str = "ping", deadline: float = 60.0) -> None:
        reply = await self.iq(f"<ping xmlns='{PING_NS}'/>", to=self.target.domain,
                              ident=ident, deadline=deadline)
        if reply.get("type") != "result":
            raise XmppError("ping failed")

    async def close(self) -> None:
        """Close the stream politely, then the socket."""
        try:
            if not self.writer.is_closing():
                self.send(b"</stream:stream>")
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (TimeoutError, OSError):
            pass

    def abort(self) -> None:
        self.writer.transport.abort()


def source_address(index: int, spread: int) -> str | None:
    """The loopback source address for client ``index`` (None: let the kernel choose)."""
    if spread <= 1:
        return None
    return f"127.0.0.{2 + index % spread}"
