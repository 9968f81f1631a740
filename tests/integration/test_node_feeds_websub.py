"""Nodes read over HTTP as Atom, RSS and JSON Feed, and pushed by our WebSub hub to a web
subscriber (a real HTTP server written here) when a client publishes over XMPP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import h11
import httpx
import pytest
from harness import ServerProcess, connect, disconnect, reserved_port, run
from lxml import etree

from .pubsub_helpers import PUBSUB, PUBSUB_PLUGINS, raw_iq, service_jid

ATOM_NS = "http://www.w3.org/2005/Atom"


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """The server with an http listener on a port known in advance (its public URL)."""
    port = reserved_port()
    server = ServerProcess(tmp_path, extra={
        "listeners": [
            {"kind": "c2s", "address": "127.0.0.1", "port": 0},
            {"kind": "http", "address": "127.0.0.1", "port": port},
        ],
        "http": {"public_url": f"http://127.0.0.1:{port}", "node_feeds_token": "t0ken"},
        "websub": {"hub_allow_callback_hosts": ["127.0.0.1"]},
    })
    server.start()
    yield server, f"http://127.0.0.1:{port}"
    server.stop()


def publish(node: str, item_id: str, title: str) -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item_id}'>"
            f"<entry xmlns='{ATOM_NS}'><id>urn:x:{item_id}</id><title>{title}</title>"
            f"<updated>2024-03-0{len(item_id)}T00:00:00Z</updated>"
            f"<link rel='alternate' href='https://site.example/{item_id}'/>"
            f"<content type='html'>&lt;p&gt;{title} body&lt;/p&gt;</content></entry>"
            f"</item></publish></pubsub>")


def create(node: str, access: str = "open") -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><create node='{node}'/><configure>"
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{PUBSUB}#node_config</value></field>"
            f"<field var='pubsub#access_model'><value>{access}</value></field>"
            "<field var='pubsub#title'><value>Web news</value></field>"
            "</x></configure></pubsub>")


class WebSubscriber:
    """A WebSub subscriber's callback: echoes challenges, records signed distributions."""

    def __init__(self) -> None:
        self.verified = asyncio.Event()
        # (request path, headers, body, arrival time) of each distribution
        self.pushes: asyncio.Queue[tuple[str, dict[str, str], bytes, float]] = asyncio.Queue()
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.server = server

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                writer.close()
                return
        assert request is not None
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        target = request.target.decode()
        status, answer = 404, b""
        if request.method == b"GET":
            query = dict(parse_qsl(urlsplit(target).query))
            if query.get("hub.mode") in ("subscribe", "unsubscribe"):
                status, answer = 200, query["hub.challenge"].encode()
        elif request.method == b"POST":
            headers["link"] = ", ".join(v.decode() for k, v in request.headers
                                        if k.lower() == b"link")
            self.pushes.put_nowait((urlsplit(target).path, headers, body, time.monotonic()))
            status = 204
        data = conn.send(h11.Response(status_code=status,
                                      headers=[("Content-Length", str(len(answer))),
                                               ("Connection", "close")]))
        data += conn.send(h11.Data(data=answer)) if answer else b""
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        await writer.drain()
        writer.close()
        if request.method == b"GET" and status == 200:
            self.verified.set()


def test_nodes_as_feeds_and_websub_push(web_server: tuple[ServerProcess, str]) -> None:
    server, base = web_server

    async def scenario() -> None:
        owner = await connect(server, server.add_user("owner"), plugins=PUBSUB_PLUGINS)
        svc = service_jid(server)
        await raw_iq(owner, svc, "set", create("web"))
        await raw_iq(owner, svc, "set", create("closed", "whitelist"))
        await raw_iq(owner, svc, "set", publish("web", "one", "First post"))
        await raw_iq(owner, svc, "set", publish("closed", "c1", "Private"))
        async with httpx.AsyncClient() as http:
            atom = await http.get(f"{base}/feeds/web.atom")
            assert atom.status_code == 200
            assert atom.headers["content-type"].startswith("application/atom+xml")
            feed = etree.fromstring(atom.content)
            assert feed.findtext(f"{{{ATOM_NS}}}title") == "Web news"
            assert [e.findtext(f"{{{ATOM_NS}}}title")
                    for e in feed.iter(f"{{{ATOM_NS}}}entry")] == ["First post"]
            hub_links = [link.get("href") for link in feed.iter(f"{{{ATOM_NS}}}link")
                         if link.get("rel") == "hub"]
            assert hub_links == [f"{base}/websub/hub"]
            # RFC 9110 §13.1: conditional requests get a 304 while nothing changed.
            again = await http.get(f"{base}/feeds/web.atom",
                                   headers={"If-None-Match": atom.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
            since = await http.get(f"{base}/feeds/web.rss",
                                   headers={"If-Modified-Since": atom.headers["last-modified"]})
            assert since.status_code == 304
            rss = etree.fromstring((await http.get(f"{base}/feeds/web.rss")).content)
            assert rss.findtext("channel/item/title") == "First post"
            assert rss.findtext("channel/item/link") == "https://site.example/one"
            doc = (await http.get(f"{base}/feeds/web.json")).json()
            assert doc["version"] == "https://jsonfeed.org/version/1.1"
            assert doc["items"][0]["title"] == "First post"
            assert doc["hubs"] == [{"type": "WebSub", "url": f"{base}/websub/hub"}]
            # Closed nodes only with the token; unknown nodes and formats are 404.
            assert (await http.get(f"{base}/feeds/closed.atom")).status_code == 404
            token = await http.get(f"{base}/feeds/closed.atom?token=t0ken")
            assert token.status_code == 200 and b"Private" in token.content
            assert (await http.get(f"{base}/feeds/none.atom")).status_code == 404
            assert (await http.get(f"{base}/feeds/web.html")).status_code == 404

            subscriber = WebSubscriber()
            await subscriber.start()
            callback = f"http://127.0.0.1:{subscriber.port}/cb?x=1"
            topic = f"{base}/feeds/web.json"
            refused = await http.post(f"{base}/websub/hub", data={
                "hub.mode": "subscribe", "hub.topic": f"{base}/feeds/closed.json",
                "hub.callback": callback})
            assert refused.status_code == 400  # only open nodes are pushed
            accepted = await http.post(f"{base}/websub/hub", data={
                "hub.mode": "subscribe", "hub.topic": topic, "hub.callback": callback,
                "hub.secret": "s3cret", "hub.lease_seconds": "3600"})
            assert accepted.status_code == 202
            await asyncio.wait_for(subscriber.verified.wait(), 10)
            await asyncio.to_thread(server.wait_for_log, "WebSub subscription of")

            # Only publishes made after subscribing are pushed (the first post predates it).
            await raw_iq(owner, svc, "set", publish("web", "two", "Second post"))
            path, headers, body, _ = await asyncio.wait_for(subscriber.pushes.get(), 10)
            assert path == "/cb"
            assert headers["content-type"].startswith("application/feed+json")
            expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert headers["x-hub-signature"] == f"sha256={expected}"
            assert f'<{topic}>; rel="self"' in headers["link"]
            assert f'<{base}/websub/hub>; rel="hub"' in headers["link"]
            pushed = json.loads(body)
            assert [i["title"] for i in pushed["items"]] == ["Second post", "First post"]

            # Unsubscribed (and verified) callbacks get nothing more; others still do.
            gone = await http.post(f"{base}/websub/hub", data={
                "hub.mode": "unsubscribe", "hub.topic": topic, "hub.callback": callback})
            assert gone.status_code == 202
            await asyncio.to_thread(server.wait_for_log, "WebSub subscription of", 2)
            other = f"http://127.0.0.1:{subscriber.port}/cb2"
            await http.post(f"{base}/websub/hub", data={
                "hub.mode": "subscribe", "hub.topic": f"{base}/feeds/web.atom",
                "hub.callback": other})
            await asyncio.to_thread(server.wait_for_log, "WebSub subscription of", 3)
            for item in ("three", "four"):
                await raw_iq(owner, svc, "set", publish("web", item, f"Post {item}"))
                path, headers, body, _ = await asyncio.wait_for(subscriber.pushes.get(), 10)
                assert path == "/cb2" and "x-hub-signature" not in headers
                assert headers["content-type"].startswith("application/atom+xml")
                assert f"Post {item}".encode() in body
            assert subscriber.pushes.empty()
            subscriber.server.close()
        await disconnect(owner)

    run(scenario())


def test_hub_callbacks_to_private_addresses_are_refused(tmp_path: Path) -> None:
    port = reserved_port()
    server = ServerProcess(tmp_path, extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "http", "address": "127.0.0.1", "port": port}],
        "http": {"public_url": f"http://127.0.0.1:{port}"},
    })
    server.start()
    base = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        owner = await connect(server, server.add_user("owner"), plugins=PUBSUB_PLUGINS)
        await raw_iq(owner, service_jid(server), "set", create("web"))
        subscriber = WebSubscriber()
        await subscriber.start()
        async with httpx.AsyncClient() as http:
            accepted = await http.post(f"{base}/websub/hub", data={
                "hub.mode": "subscribe", "hub.topic": f"{base}/feeds/web.atom",
                "hub.callback": f"http://127.0.0.1:{subscriber.port}/cb"})
            assert accepted.status_code == 202
        # The loopback callback is never contacted: the guarded transport refuses it.
        await asyncio.to_thread(server.wait_for_log, "WebSub verification of")
        assert "resolves to no public address" in server.log()
        assert not subscriber.verified.is_set()
        subscriber.server.close()
        await disconnect(owner)

    try:
        run(scenario())
    finally:
        server.stop()
