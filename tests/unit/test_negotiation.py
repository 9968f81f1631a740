"""C2S negotiation without sockets: a C2SConnection on one end of an in-memory stream pair.

The test is the client: it writes XML by hand and reads what the server answers, so every
negotiation step (header checks, STARTTLS, SASL, bind, session) is exercised exactly as on the
wire, only without TCP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pubsubd.auth_throttle import AuthThrottle
from pubsubd.config import Config, LimitsConfig, TLSConfig
from pubsubd.core.context import ServerContext
from pubsubd.core.hooks import HookBus
from pubsubd.core.router import Router
from pubsubd.core.session import SessionRegistry
from pubsubd.jid import JID
from pubsubd.net.c2s import C2SConnection
from pubsubd.net.tls import ensure_self_signed, server_context
from pubsubd.storage.accounts import SqliteAccountStore
from pubsubd.storage.sqlite import Database

DOMAIN = "example.org"
HEADER = (
    "<?xml version='1.0'?><stream:stream to='{to}' xmlns='{content}' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='{version}'{lang}>"
)
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
JULIET_PLAIN = base64.b64encode(b"\0juliet\0secret-1").decode()


class Wire:
    """The client's end of the in-memory connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: str) -> None:
        await self.stream.send_all(data.encode())

    async def until(self, marker: str, timeout: float = 5) -> str:
        with trio.fail_after(timeout):
            while marker.encode() not in self.buffer:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise ConnectionError(f"closed before {marker!r}: {self.buffer!r}")
                self.buffer += chunk
        idx = self.buffer.index(marker.encode()) + len(marker)
        out, self.buffer = self.buffer[:idx], self.buffer[idx:]
        return out.decode()

    async def rest(self, timeout: float = 5) -> str:
        """Everything until the server closes the connection."""
        with trio.fail_after(timeout):
            while True:
                try:
                    chunk = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                if not chunk:
                    out, self.buffer = self.buffer, b""
                    return out.decode()
                self.buffer += chunk

    async def open(self, to: str = DOMAIN, *, content: str = "jabber:client",
                   version: str = "1.0", lang: str | None = None) -> str:
        lang_attr = f" xml:lang='{lang}'" if lang else ""
        await self.send(HEADER.format(to=to, content=content, version=version, lang=lang_attr))
        return await self.until("</stream:features>")


class Accounts:
    """The router's question about accounts, answered from the store."""

    def __init__(self, store: SqliteAccountStore) -> None:
        self.store = store

    async def exists(self, jid: JID) -> bool:
        return jid.local is not None and await self.store.get(jid.local, jid.domain) is not None


def make_config(tmp_path: Path, **limits: object) -> Config:
    return Config(
        domains=(DOMAIN,),
        data_dir=str(tmp_path),
        tls=TLSConfig(require_c2s=False),
        limits=replace(LimitsConfig(), **limits),  # type: ignore[arg-type]
    )


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ServerContext]:
    config = make_config(tmp_path)
    db = Database(tmp_path / "db.sqlite3")
    accounts = SqliteAccountStore(db, 4096)
    await accounts.create("juliet", DOMAIN, "secret-1")
    sessions = SessionRegistry()
    hooks = HookBus()
    router = Router(config.domains, sessions, hooks, Accounts(accounts))
    cert, key = ensure_self_signed(tmp_path, [DOMAIN])
    throttle = AuthThrottle(3, 600, 0.5, 10, trio.current_time)
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    yield ServerContext(config, router, sessions, hooks, accounts, throttle,
                        server_context(cert, key), der)
    db.close()


def with_config(ctx: ServerContext, config: Config) -> ServerContext:
    return ServerContext(config, ctx.router, ctx.sessions, ctx.hooks, ctx.accounts,
                         ctx.throttle, ctx.tls, ctx.tls_cert_der)


async def connect(nursery: trio.Nursery, ctx: ServerContext) -> Wire:
    client, server = trio.testing.memory_stream_pair()
    conn = C2SConnection(ctx, server, "192.0.2.1")
    nursery.start_soon(conn.run)
    return Wire(client)


async def plain_login_and_bind(wire: Wire, resource: str | None = None) -> str:
    """Juliet's SASL PLAIN login and resource binding on a fresh stream; the bind answer."""
    await wire.open()
    await wire.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{JULIET_PLAIN}</auth>")
    assert "<success" in await wire.until("</success>")
    await wire.open()
    wanted = f"<resource>{resource}</resource>" if resource else ""
    await wire.send(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    f"{wanted}</bind></iq>")
    return await wire.until("</iq>")


def stream_error(text: str) -> str:
    match = re.search(r"<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'", text)
    assert match, text
    assert text.endswith("</stream:stream>"), text  # RFC 6120 §4.9.1.1: error, then close
    return match.group(1)


# --- stream header (RFC 6120 §4.7) ----------------------------------------------------------

async def test_header_is_answered_with_features(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        features = await wire.open(lang="de")
        assert f"from='{DOMAIN}'" in features
        # We write English: the response says so even though the client prefers German.
        assert "xml:lang='en'" in features
        assert "<starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"" in features
        assert "<mechanism>SCRAM-SHA-256</mechanism>" in features
        assert "<mechanism>PLAIN</mechanism>" not in features  # not without TLS
        nursery.cancel_scope.cancel()


async def test_stream_ids_are_long_and_random(ctx: ServerContext) -> None:
    ids = set()
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            wire = await connect(nursery, ctx)
            features = await wire.open()
            match = re.search(r" id='([^']+)'", features)
            assert match
            ids.add(match.group(1))
        nursery.cancel_scope.cancel()
    assert len(ids) == 5
    assert all(len(i) >= 16 for i in ids)


@pytest.mark.parametrize(
    ("kwargs", "condition"),
    [
        ({"to": "other.example"}, "host-unknown"),
        ({"content": "jabber:server"}, "invalid-namespace"),
        ({"version": "0.9"}, "unsupported-version"),
        ({"version": "x.y"}, "unsupported-version"),
    ],
)
async def test_bad_headers(ctx: ServerContext, kwargs: dict[str, str], condition: str) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.send(HEADER.format(**{"to": DOMAIN, "content": "jabber:client",
                                         "version": "1.0", "lang": "", **kwargs}))
        text = await wire.rest()
        assert text.startswith("<?xml version='1.0'?><stream:stream ")
        assert stream_error(text) == condition
        assert f"from='{DOMAIN}'" in text  # RFC 6120 §4.9.1.3


async def test_no_version_is_unsupported(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.send(HEADER.format(to=DOMAIN, content="jabber:client", version="1.0", lang="")
                        .replace("' version='1.0'", "'"))
        assert stream_error(await wire.rest()) == "unsupported-version"


async def test_higher_version_gets_our_version(ctx: ServerContext) -> None:
    # RFC 6120 §4.7.5 rule 2: answer with the lower of the two versions, not an error.
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        features = await wire.open(version="1.10")
        assert "version='1.0'" in features
        features2_wire = await connect(nursery, ctx)
        assert "version='1.0'" in await features2_wire.open(version="2.0")
        nursery.cancel_scope.cancel()


async def test_other_stream_prefix_is_bad_namespace_prefix(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.send(f"<foobar:stream to='{DOMAIN}' xmlns='jabber:client' version='1.0' "
                        "xmlns:foobar='http://etherx.jabber.org/streams'>")
        assert stream_error(await wire.rest()) == "bad-namespace-prefix"


async def test_parse_error_before_header_still_gets_a_header(ctx: ServerContext) -> None:
    # RFC 6120 §4.9.1.2: the opening tag, the error, the closing tag.
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.send("<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY a 'b'>]>")
        text = await wire.rest()
        assert text.startswith("<?xml version='1.0'?><stream:stream ")
        assert stream_error(text) == "restricted-xml"


# --- STARTTLS and stanzas too early -----------------------------------------------------------

async def test_stanza_before_starttls_when_required(ctx: ServerContext, tmp_path: Path) -> None:
    strict = with_config(ctx, replace(ctx.config, tls=TLSConfig(require_c2s=True)))
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, strict)
        features = await wire.open()
        assert "<required/>" in features and "mechanism" not in features
        await wire.send("<message to='romeo@example.org'><body>hi</body></message>")
        assert stream_error(await wire.rest()) == "policy-violation"


async def test_stanza_before_auth_is_not_authorized(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.open()
        await wire.send("<message to='romeo@example.org'><body>hi</body></message>")
        assert stream_error(await wire.rest()) == "not-authorized"


async def test_starttls_then_sasl_then_bind(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.open()
        await wire.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await wire.until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        client_ctx = ssl.create_default_context()
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        tls = trio.SSLStream(wire.stream, client_ctx, server_hostname=DOMAIN)
        await tls.do_handshake()
        wire = Wire(tls)
        features = await wire.open()
        assert "starttls" not in features
        assert "<mechanism>PLAIN</mechanism>" in features  # PLAIN only inside TLS
        assert "SCRAM-SHA-256-PLUS" in features  # tls-server-end-point binding
        await wire.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                        f"{JULIET_PLAIN}</auth>")
        assert "<success" in await wire.until("</success>")
        features = await wire.open()
        assert "urn:ietf:params:xml:ns:xmpp-bind" in features
        await wire.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                        "<resource>balcony</resource></bind></iq>")
        assert "<jid>juliet@example.org/balcony</jid>" in await wire.until("</iq>")
        nursery.cancel_scope.cancel()


# --- SASL (RFC 6120 §6) ------------------------------------------------------------------------

def scram_client_first(user: str) -> tuple[str, str]:
    nonce = secrets.token_urlsafe(18)
    bare = f"n={user},r={nonce}"
    return "n,," + bare, bare


def scram_client_final(password: str, bare: str, server_first: str) -> tuple[str, bytes]:
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    salt = base64.b64decode(attrs["s"])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(attrs["i"]))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = hmac.digest(server_key, auth_message, "sha256")
    return f"{without_proof},p={base64.b64encode(proof).decode()}", expected


async def scram(wire: Wire, user: str, password: str) -> str:
    first, bare = scram_client_first(user)
    await wire.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>"
                    f"{base64.b64encode(first.encode()).decode()}</auth>")
    challenge = await wire.until("</challenge>")
    server_first = base64.b64decode(re.sub(r"<[^>]+>", "", challenge)).decode()
    final, expected = scram_client_final(password, bare, server_first)
    await wire.send(f"<response xmlns='{SASL}'>{base64.b64encode(final.encode()).decode()}"
                    "</response>")
    answer = await wire.until(">")
    if "<success" in answer:
        answer += await wire.until("</success>")
        data = re.sub(r"<[^>]+>", "", answer)
        assert base64.b64decode(data).decode() == "v=" + base64.b64encode(expected).decode()
    else:
        answer += await wire.until("</failure>")
    return answer


async def test_scram_sha_256_success_and_session(ctx: ServerContext) -> None:
    closed = []

    async def on_closed(session: object) -> bool:
        closed.append(session)
        return False

    ctx.hooks.on("session/closed", on_closed)
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.open(lang="de")
        assert "<success" in await scram(wire, "juliet", "secret-1")
        features = await wire.open()
        assert "urn:ietf:params:xml:ns:xmpp-session" in features
        await wire.send("<iq type='set' id='b'>"
                        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        bound = await wire.until("</iq>")
        jid = re.search(r"<jid>([^<]+)</jid>", bound)
        assert jid and re.fullmatch(r"juliet@example\.org/[0-9a-f]{12}", jid.group(1))
        # RFC 3921 §3: the legacy session iq is answered with an empty result.
        await wire.send("<iq type='set' id='s'>"
                        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        assert 'type="result" id="s"/>' in await wire.until('id="s"/>')
        assert len(ctx.sessions) == 1
        # 'from' is stamped by the server: the answer goes to us, not to the spoofed sender,
        # and an unknown payload gets service-unavailable (RFC 6120 §8.4).
        await wire.send("<iq type='get' id='q' from='romeo@example.org/x'>"
                        "<query xmlns='urn:example:unknown'/></iq>")
        reply = await wire.until("</iq>")
        assert f'to="{jid.group(1)}"' in reply and "romeo" not in reply
        assert "<service-unavailable" in reply and 'type="cancel"' in reply
        await wire.send("</stream:stream>")
        rest = await wire.rest()
        assert rest.endswith("</stream:stream>")
    assert len(ctx.sessions) == 0 and len(closed) == 1


async def test_wrong_password_is_not_authorized(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.open()
        answer = await scram(wire, "juliet", "wrong")
        assert answer.startswith(f"<failure xmlns='{SASL}'><not-authorized/>")
        # Unknown users fail the same way (no account enumeration).
        answer = await scram(wire, "nobody", "wrong")
        assert "<not-authorized/>" in answer
        nursery.cancel_scope.cancel()


async def test_too_many_failures_close_the_stream(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.open()
        for _ in range(2):
            assert "<not-authorized/>" in await scram(wire, "juliet", "bad")
        await scram(wire, "juliet", "bad")
        assert stream_error(await wire.rest()) == "policy-violation"


async def test_sasl_conditions(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.open()
        await wire.send(f"<auth xmlns='{SASL}' mechanism='X-NOPE'/>")
        assert "<invalid-mechanism/>" in await wire.until("</failure>")
        await wire.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGp1bGlldABz</auth>")
        # PLAIN is not offered without TLS here.
        assert "<invalid-mechanism/>" in await wire.until("</failure>")
        await wire.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>!!not base64!!</auth>")
        assert "<incorrect-encoding/>" in await wire.until("</failure>")
        await wire.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>"
                        f"{base64.b64encode(b'garbage').decode()}</auth>")
        assert "<malformed-request/>" in await wire.until("</failure>")
        nursery.cancel_scope.cancel()


async def test_abort_during_scram(ctx: ServerContext) -> None:
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, ctx)
        await wire.open()
        first, _ = scram_client_first("juliet")
        await wire.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>"
                        f"{base64.b64encode(first.encode()).decode()}</auth>")
        await wire.until("</challenge>")
        await wire.send(f"<abort xmlns='{SASL}'/>")
        assert "<aborted/>" in await wire.until("</failure>")
        # The client may try again after an abort.
        assert "<success" in await scram(wire, "juliet", "secret-1")
        nursery.cancel_scope.cancel()


async def test_plain_without_tls_when_allowed(ctx: ServerContext) -> None:
    lax = with_config(ctx, replace(ctx.config, auth=replace(ctx.config.auth,
                                                              allow_plain_without_tls=True)))
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, lax)
        assert "<mechanism>PLAIN</mechanism>" in await wire.open()
        await wire.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{JULIET_PLAIN}</auth>")
        assert "<success" in await wire.until("</success>")
        nursery.cancel_scope.cancel()


# --- deadlines ---------------------------------------------------------------------------------

async def test_half_negotiated_connection_times_out(
    ctx: ServerContext, autojump_clock: trio.testing.MockClock
) -> None:
    # In-memory streams and trio's virtual clock: the deadline passes without real waiting.
    quick = with_config(ctx, replace(ctx.config, limits=replace(ctx.config.limits,
                                                                  handshake_timeout=30)))
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, quick)
        await wire.open()
        started = trio.current_time()
        assert stream_error(await wire.rest(timeout=60)) == "connection-timeout"
        assert trio.current_time() - started == pytest.approx(30)  # the deadline, no sooner


async def test_bound_connection_silent_for_the_idle_timeout_is_closed(
    ctx: ServerContext,
) -> None:
    """RFC 6120 §4.9.3.4: a bound client that says nothing for ``limits.idle_timeout`` gets
    connection-timeout, not sooner; whitespace keeps it open (RFC 6120 §4.6.1). Real
    sockets and real time: the silences are the subject of the test."""
    timeout = 1.0
    quick = with_config(ctx, replace(
        ctx.config, limits=replace(ctx.config.limits, idle_timeout=timeout),
        auth=replace(ctx.config.auth, allow_plain_without_tls=True)))
    server_sock, client_sock = trio.socket.socketpair()
    conn = C2SConnection(quick, trio.SocketStream(server_sock), "192.0.2.1")
    wire = Wire(trio.SocketStream(client_sock))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        assert "<jid>" in await plain_login_and_bind(wire)
        for _ in range(4):  # 1.6 s in all, each silence shorter than the timeout
            await trio.sleep(0.4)
            await wire.send(" ")
        last_sent = trio.current_time()
        closing = await wire.until("</stream:stream>", timeout=10)
        waited = trio.current_time() - last_sent
    assert stream_error(closing) == "connection-timeout"
    assert waited >= timeout
