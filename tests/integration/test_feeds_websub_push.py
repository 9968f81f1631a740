"""A feed whose hub pushes: the real pubsubd subscribes at a WebSub hub written in the tests,
confirms the hub's verification on its HTTP listener, and a signed push reaches an XMPP
subscriber within a second, without a poll; a forged push is ignored."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, PUBSUB, Inbox, ThreadedFeedServer, iq  # noqa: E402
from harness import ServerProcess, connect, disconnect, reserved_port, round_trip, run  # noqa: E402
from websub_support import Subscription, TestHub  # noqa: E402

SERVICE = "pubsub.localhost"


def atom(hub: str, self_url: str, ids: list[str]) -> str:
    entries = "".join(
        f"<entry><id>urn:e:{i}</id><title>Entry {i}</title><updated>2024-01-{n + 10}T00:00:00Z"
        f"</updated><link href='http://example.org/{i}'/></entry>"
        for n, i in enumerate(reversed(ids)))
    return (f"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>Pushed"
            f"</title><id>urn:f</id><updated>2024-01-01T00:00:00Z</updated>"
            f"<link rel='hub' href='{hub}'/><link rel='self' href='{self_url}'/>{entries}</feed>")


class ThreadedHub:
    """``TestHub`` run by trio in a background thread, for asyncio tests."""

    def __init__(self) -> None:
        self.hub = TestHub()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                await self.hub.start(nursery)
                self._ready.set()
                await trio.sleep_forever()

    def __enter__(self) -> ThreadedHub:
        self._thread.start()
        assert self._ready.wait(10), "hub did not start"
        return self

    def __exit__(self, *_: object) -> None:
        assert self._token is not None and self._cancel is not None
        trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)

    def wait_verified(self, timeout: float = 15.0) -> Subscription:
        async def wait() -> Subscription:
            with trio.fail_after(timeout):
                await self.hub.wait_for(lambda: bool(self.hub.verified))
            return next(iter(self.hub.verified.values()))

        return trio.from_thread.run(wait, trio_token=self._token)

    def distribute(self, sub: Subscription, body: str, secret: str | None = None) -> int:
        async def post() -> int:
            response = await self.hub.distribute(sub, body.encode(), secret=secret)
            return response.status_code

        return trio.from_thread.run(post, trio_token=self._token)


def test_pushed_entries_are_notified_at_once(tmp_path: Path) -> None:
    port = reserved_port()
    with ThreadedFeedServer() as web, ThreadedHub() as hub:
        url = web.url("/pushed.atom")
        web.set("/pushed.atom", atom(hub.hub.url, url, ["1"]),
                content_type="application/atom+xml")
        server = ServerProcess(tmp_path, extra={
            "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                          {"kind": "http", "address": "127.0.0.1", "port": port}],
            "feeds": FEEDS_EXTRA,
            "http": {"public_url": f"http://127.0.0.1:{port}"},
            "websub": {"poll_interval_with_push": 3600.0},
        })
        server.start()
        try:
            jid = server.add_user("alice")

            async def scenario() -> None:
                client = await connect(server, jid)
                inbox = Inbox(client)
                await iq(client, SERVICE, "set",
                         f"<pubsub xmlns='{PUBSUB}'><subscribe node='{url}' jid='{jid}'/>"
                         "</pubsub>")
                await asyncio.to_thread(server.refresh_feed, url)
                sub: Subscription = await asyncio.to_thread(hub.wait_verified)
                assert sub.topic == url and sub.callback.startswith(
                    f"http://127.0.0.1:{port}/websub/cb/")
                # A poll while the hub pushes puts the next one an hour away (safety net).
                await asyncio.to_thread(server.refresh_feed, url)
                fetches = web.hits("/pushed.atom")

                forged = await asyncio.to_thread(
                    hub.distribute, sub, atom(hub.hub.url, url, ["1", "evil"]), "guess")
                assert forged == 202
                status = await asyncio.to_thread(
                    hub.distribute, sub, atom(hub.hub.url, url, ["1", "2"]))
                assert status == 202
                await inbox.wait_for(lambda: any(
                    i == "urn:e:2" for _, i, _ in inbox.item_notifications()), within=5)
                await round_trip(client)
                ids = [i for _, i, _ in inbox.item_notifications()]
                assert ids == ["urn:e:2"], ids  # once, and never the forged entry
                assert web.hits("/pushed.atom") == fetches  # pushed, not polled
                await disconnect(client)

            run(scenario())
        finally:
            server.stop()
