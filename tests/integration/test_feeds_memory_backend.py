"""The feed service on the memory storage backend: nothing of it needs SQLite any more.

A server started with ``storage.backend: memory`` takes a registration, a chat subscription to
a real HTTP feed, names the feed's contact and delivers its latest entry from it; the control
socket lists the feed with its items.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, Inbox, ThreadedFeedServer, chat, rss  # noqa: E402
from harness import ServerProcess, disconnect, make_client, run  # noqa: E402

SERVICE = "pubsub.localhost"


async def _register_and_connect(server: ServerProcess, local: str) -> Any:
    """In-band registration (XEP-0077): the memory backend has no file a CLI could write."""
    client = make_client(f"{local}@{server.domain}", "password1", ("xep_0030", "xep_0077"))
    client.plugin["xep_0077"].force_registration = True
    loop = asyncio.get_running_loop()
    registered: asyncio.Future[bool] = loop.create_future()
    started: asyncio.Future[bool] = loop.create_future()

    async def on_register(_: Any) -> None:
        iq = client.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = local
        iq["register"]["password"] = "password1"
        await iq.send(timeout=5)
        registered.set_result(True)

    client.add_event_handler("register", on_register)
    client.add_event_handler("session_start", lambda _: started.set_result(True))
    client.connect(host="127.0.0.1", port=server.c2s_port)
    await asyncio.wait_for(registered, 15)
    await asyncio.wait_for(started, 15)
    client.send_presence()
    return client


def test_a_memory_backed_server_serves_feeds(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/news.xml", rss("Memory news", ["m2", "m1"]),
                content_type="application/rss+xml")
        url = web.url("/news.xml")
        server = ServerProcess(tmp_path, extra={"feeds": FEEDS_EXTRA,
                                                "storage": {"backend": "memory"}})
        server.start()
        try:
            async def scenario() -> None:
                client = await _register_and_connect(server, "dora")
                inbox = Inbox(client)
                reply = await chat(client, inbox, SERVICE, f"subscribe {url}")
                assert "Subscribed" in reply, reply
                contact = "memory-news@" + SERVICE
                # The latest entry at once, from the feed's contact.
                await inbox.wait_for(lambda: any(
                    (m.findtext("{jabber:client}body") or "").startswith("*Entry m2")
                    for m in inbox.messages if m.get("from", "").startswith(contact)))
                await disconnect(client)

            run(scenario())
            rows = json.loads(server.cli("feeds", "list", "--json").stdout)
            assert [(r["url"], r["subscribers"], r["items"]) for r in rows] == [(url, 1, 2)]
        finally:
            server.stop()
