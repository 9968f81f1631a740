"""WebSub push-to-notification latency of pubsubd's feed service (issue 19).

The bench runs, in its own asyncio loop, a minimal W3C WebSub hub and the feed it advertises
on one loopback HTTP port. A pubsubd with an ``http`` listener and ``http.public_url`` polls the
feed once, finds the hub link, subscribes and confirms the hub's verification. Then the hub
pushes one new entry at a time to the subscriber's callback, signed with the secret pubsubd
chose (W3C WebSub §7–8), and a logged-in XMPP client subscribed to the feed's node measures the
time from the start of each push to the pubsub notification carrying that entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import httpx
import yaml
from lxml import etree

from bench.clients import login_many, register_accounts
from bench.measure import percentile
from bench.servers import Pubsubd, free_port
from bench.wire import Connection

PUBSUB_NS = "http://jabber.org/protocol/pubsub"
EVENT_ITEM = "{http://jabber.org/protocol/pubsub#event}item"
MESSAGE = "{jabber:client}message"
READER = "wsreader"
KEPT_ENTRIES = 5  # entries in each pushed document: the new one and a few already known


def atom(hub: str, topic: str, newest: int) -> bytes:
    """The feed with entries ``newest-KEPT_ENTRIES+1 .. newest``, naming its hub and itself."""
    entries = "".join(
        f"<entry><id>urn:bench:ws:{n}</id><title>Pushed entry {n}</title>"
        f"<updated>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(1_700_000_000 + n))}"
        f"</updated><link href='https://example.org/ws/{n}'/>"
        f"<summary>Entry {n}, pushed through the hub.</summary></entry>"
        for n in range(newest, max(newest - KEPT_ENTRIES, -1), -1))
    return ("<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
            "<title>WebSub bench feed</title><id>urn:bench:ws</id>"
            "<updated>2024-01-01T00:00:00Z</updated>"
            f"<link rel='hub' href='{hub}'/><link rel='self' href='{topic}'/>{entries}"
            "</feed>").encode()


@dataclass
class HubAndFeed:
    """A WebSub hub at ``/hub`` and its feed at ``/feed.atom``, on one loopback port."""

    port: int = 0
    newest: int = 0
    callback: str = ""
    secret: str = ""
    feed_fetches: int = 0
    verified: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub"

    @property
    def topic(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.atom"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0)  # let the connections see their end

    def document(self) -> bytes:
        return atom(self.hub_url, self.topic, self.newest)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _version = head[0].split(" ", 2)
                headers = {name.strip().lower(): value.strip() for name, sep, value
                           in (line.partition(":") for line in head[1:]) if sep}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, content = self._answer(method, path, body)
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(content)}\r\n"
                             "Content-Type: application/atom+xml\r\n\r\n".encode() + content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if method == "GET" and path == "/feed.atom":
            self.feed_fetches += 1
            return 200, self.document()
        if method == "POST" and path == "/hub":
            form = dict(parse_qsl(body.decode()))
            if form.get("hub.mode") != "subscribe" or form.get("hub.topic") != self.topic:
                return 400, b""
            task = asyncio.create_task(self._verify(form))  # W3C WebSub §5.3: after the 202
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return 202, b""
        return 404, b""

    async def _verify(self, form: dict[str, str]) -> None:
        """W3C WebSub §5.3: the subscriber must echo the challenge."""
        challenge = secrets.token_hex(8)
        query = urlencode({"hub.mode": "subscribe", "hub.topic": self.topic,
                           "hub.challenge": challenge,
                           "hub.lease_seconds": form.get("hub.lease_seconds", "86400")})
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{form['hub.callback']}?{query}")
        if response.status_code == 200 and response.text == challenge:
            self.callback, self.secret = form["hub.callback"], form.get("hub.secret", "")
            self.verified.set()

    async def push(self, client: httpx.AsyncClient) -> None:
        """W3C WebSub §7–8: distribute the feed with one more entry, signed."""
        self.newest += 1
        body = self.document()
        signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        response = await client.post(self.callback, content=body, headers={
            "Content-Type": "application/atom+xml",
            "X-Hub-Signature": f"sha256={signature}",
            "Link": f'<{self.hub_url}>; rel="hub", <{self.topic}>; rel="self"'})
        if response.status_code >= 300:
            raise RuntimeError(f"push refused: {response.status_code} {response.text[:200]}")


class WebSubPubsubd(Pubsubd):
    """pubsubd with feeds and an http listener its WebSub callbacks are reached at."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        http_port = free_port()
        listeners = cast(list[dict[str, Any]], self.config["listeners"])
        listeners.append({"kind": "http", "address": "127.0.0.1", "port": http_port})
        self.config["http"] = {"public_url": f"http://127.0.0.1:{http_port}"}
        # Polled once to find the hub; after that, only pushes bring entries.
        self.config["feeds"] = {"enabled": True, "allow_hosts": ["127.0.0.1"],
                                "first_poll": "none", "host_spacing": 0.0}
        self.config["websub"] = {"poll_interval_with_push": 86400.0}
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.control = workdir / "var" / "control.sock"

    def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        from pubsubd.admin_cli import call

        return call(self.control, op, args or {})


@dataclass(frozen=True)
class PushLatency:
    latencies: list[float]  # seconds, one per pushed entry
    subscribe_s: float  # from the first poll to the hub's verified subscription

    def ms(self, fraction: float) -> float | None:
        p = percentile(sorted(self.latencies), fraction)
        return None if p is None else p * 1000

    def describe(self) -> str:
        return (f"WebSub push: {len(self.latencies)} entries pushed one at a time by a local "
                f"hub to pubsubd's callback (signed, sha256), each timed from the start of "
                f"the POST to the pubsub notification at a subscribed client: p50 "
                f"{self.ms(0.5) or 0:.1f} ms, p99 {self.ms(0.99) or 0:.1f} ms, max "
                f"{self.ms(1.0) or 0:.1f} ms; the hub verified pubsubd's subscription "
                f"{self.subscribe_s:.2f} s after the first poll")


def _item_ids(stanza: etree._Element) -> list[str]:
    if stanza.tag != MESSAGE:
        return []
    return [item.get("id", "") for item in stanza.iter(EVENT_ITEM)]


async def _wait_item(conn: Connection, wanted: str, deadline: float = 30.0) -> float:
    """Read stanzas until a notification carries ``wanted``; when it arrived."""
    async with asyncio.timeout(deadline):
        while True:
            stanza = await conn.next_element(deadline)
            if wanted in _item_ids(stanza):
                return time.perf_counter()


async def measure(server: WebSubPubsubd, pushes: int) -> PushLatency:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per push
    await register_accounts(server.target, [READER])
    hub = HubAndFeed()
    await hub.start()
    [conn] = await login_many(server.target, [(READER, "ws")])
    try:
        conn.send(b"<presence/>")  # feed nodes notify available resources
        bare = conn.jid.split("/")[0] if conn.jid else f"{READER}@{server.domain}"
        reply = await conn.iq(f"<pubsub xmlns='{PUBSUB_NS}'><subscribe node='{hub.topic}' "
                              f"jid='{bare}'/></pubsub>", to=server.pubsub_domain,
                              type_="set", ident="sub")
        if reply.get("type") != "result":
            raise RuntimeError(f"feed subscription refused: {etree.tostring(reply)[:300]!r}")
        started = time.monotonic()
        await asyncio.to_thread(server.call, "feeds.refresh", {"url": hub.topic})
        await asyncio.wait_for(hub.verified.wait(), 60)
        subscribe_s = time.monotonic() - started
        fetches = hub.feed_fetches
        latencies = []
        async with httpx.AsyncClient() as client:
            for _ in range(pushes):
                wanted = f"urn:bench:ws:{hub.newest + 1}"
                sent = time.perf_counter()
                _, arrived = await asyncio.gather(hub.push(client), _wait_item(conn, wanted))
                latencies.append(arrived - sent)
        if hub.feed_fetches != fetches:
            raise RuntimeError("the feed was polled while the hub pushed: these latencies "
                               "would not be the push's alone")
        return PushLatency(latencies, subscribe_s)
    finally:
        await conn.close()
        await hub.stop()


def run_standalone(workdir: Path, pushes: int = 200) -> PushLatency:
    """Start a pubsubd of its own in ``workdir``, measure, stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = WebSubPubsubd(workdir)
    server.start()
    try:
        return asyncio.run(measure(server, pushes))
    finally:
        server.stop()


if __name__ == "__main__":  # the push latency alone: python -m bench.websub_push
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(run_standalone(Path(tmp) / "websub").describe())
