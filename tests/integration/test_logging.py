"""Structured logs: JSON lines name the JID, peer or feed of each event, and no password or
SCRAM material ever reaches the log, even at DEBUG."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss  # noqa: E402
from harness import RawClient, ServerProcess  # noqa: E402

from pubsubd.logging_setup import ContextAdapter, JsonFormatter, SecretFilter  # noqa: E402

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
PASSWORD = "Tr0ub4dor&3-horse"


def _payload(reply: str, tag: str) -> str:
    return reply.split(f"<{tag}", 1)[1].split(">", 1)[1].split("<", 1)[0]


def scram_login(srv: ServerProcess, local: str, password: str) -> list[str]:
    """A SCRAM-SHA-256 login (RFC 5802 §3) by hand; returns every base64 payload exchanged."""
    raw = RawClient(srv)
    try:
        raw.open()
        raw.starttls()
        raw.open()
        nonce = secrets.token_urlsafe(18)
        bare = f"n={local},r={nonce}"
        first = base64.b64encode(f"n,,{bare}".encode()).decode()
        raw.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
        challenge = _payload(raw.read_until(b"</challenge>"), "challenge")
        server_first = base64.b64decode(challenge).decode()
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        without_proof = f"c=biws,r={attrs['r']}"
        message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.new(hashlib.sha256(client_key).digest(), message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        final = base64.b64encode(
            f"{without_proof},p={base64.b64encode(proof).decode()}".encode()).decode()
        raw.send(f"<response xmlns='{SASL}'>{final}</response>")
        success = _payload(raw.read_until(b"</success>"), "success")
        raw.open()
        raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 "<resource>scram</resource></bind></iq>")
        raw.read_until(b"</iq>")
        return [first, challenge, final, success, base64.b64encode(proof).decode(), nonce]
    finally:
        raw.close()


def plain_attempt(srv: ServerProcess, local: str, password: str) -> str:
    raw = RawClient(srv)
    try:
        raw.open()
        raw.starttls()
        raw.open()
        token = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
        raw.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        raw.read_until(b"</failure>")
        return token
    finally:
        raw.close()


def json_lines(srv: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in srv.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def wait_for_event(srv: ServerProcess, event: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in json_lines(srv) if r.get("event") == event]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_json_events_carry_fields_and_no_secrets(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/log.xml", rss("Logged", ["l1"]), content_type="application/rss+xml")
        web.set("/missing.xml", "", status=404)
        srv = ServerProcess(tmp_path, extra={"log": {"level": "DEBUG", "format": "json"},
                                             "feeds": FEEDS_EXTRA})
        srv.start()
        try:
            jid = srv.add_user("writer", PASSWORD)
            payloads = scram_login(srv, "writer", PASSWORD)
            wrong = plain_attempt(srv, "writer", PASSWORD + "-wrong")
            srv.cli("feeds", "add", web.url("/log.xml"))
            srv.cli("feeds", "add", web.url("/missing.xml"))
            fetched = wait_for_event(srv, "feed.fetched")
            failed = wait_for_event(srv, "c2s.login_failed")
            closed = wait_for_event(srv, "c2s.session_closed")
        finally:
            srv.stop()
    text = srv.log_path.read_text(errors="replace")
    for secret in (PASSWORD, wrong, *payloads):
        assert secret not in text, f"secret material in the log: {secret[:12]}..."

    login = [r for r in json_lines(srv) if r.get("event") == "c2s.login"]
    assert login and login[0]["jid"] == jid and login[0]["peer"].startswith("127.0.0.1")
    bound = [r for r in json_lines(srv) if r.get("event") == "c2s.session_bound"]
    assert bound and bound[0]["jid"] == f"{jid}/scram"
    assert closed and closed[0]["jid"] == f"{jid}/scram" and "peer" in closed[0]
    assert failed and failed[0]["jid"] == jid and failed[0]["level"] == "WARNING"
    assert any(r["feed"] == web.url("/log.xml") and r["status"] == 200 for r in fetched)
    assert any(r.get("event") == "feed.fetch_failed" and r["feed"] == web.url("/missing.xml")
               for r in json_lines(srv))


def test_formatter_merges_context_and_redacts() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(SecretFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pubsubd.test.logging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        adapter = ContextAdapter(logger, {"peer": "192.0.2.1:5222"})
        adapter.warning("login %s", "x", extra={"event": "c2s.login", "jid": "a@b"})
        logger.warning("got <auth xmlns='%s' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>", SASL)
        logger.warning("config password: hunter2, next")
    finally:
        logger.removeHandler(handler)
    first = json.loads(records[0])
    assert first["peer"] == "192.0.2.1:5222" and first["jid"] == "a@b"
    assert first["event"] == "c2s.login"
    assert "AGFsaWNlAHNlY3JldA==" not in records[1] and "[redacted]" in records[1]
    assert "hunter2" not in records[2]
