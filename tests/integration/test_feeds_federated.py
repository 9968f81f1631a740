"""A user of another server follows a feed: the feed's contact asks for a presence
subscription (no roster push across servers), and entries arrive from it as plain chat."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss  # noqa: E402
from harness import connect, disconnect, reserved_port, run  # noqa: E402

from .s2s_support import Inbox, federated_server, stanza  # noqa: E402

C = "{jabber:client}"
COMMANDS_AT_B = "feeds@pubsub.b.localhost"
NEWS_AT_B = "far-news@pubsub.b.localhost"


def test_remote_follower_gets_a_subscription_request_and_chat_entries(tmp_path: Path) -> None:
    port_a, port_b = reserved_port(), reserved_port()
    routes_a = {"b.localhost": f"127.0.0.1:{port_b}", "pubsub.b.localhost": f"127.0.0.1:{port_b}"}
    routes_b = {"a.localhost": f"127.0.0.1:{port_a}", "pubsub.a.localhost": f"127.0.0.1:{port_a}"}
    a = federated_server(tmp_path / "a", "a.localhost", port_a, routes_a)
    b = federated_server(tmp_path / "b", "b.localhost", port_b, routes_b)
    with ThreadedFeedServer() as web:
        web.set("/far.xml", rss("Far News", ["f1"]), content_type="application/rss+xml")
        b.config["feeds"] = FEEDS_EXTRA
        b.config_path.write_text(yaml.safe_dump(b.config))
        a.start()
        b.start()
        try:
            reader = a.add_user("reader")

            async def scenario() -> None:
                client = await connect(a, reader)
                inbox = Inbox(client)
                client.send_message(mto=COMMANDS_AT_B, mbody=f"subscribe {web.url('/far.xml')}",
                                    mtype="chat")
                reply = await inbox.wait(stanza("message", "chat", COMMANDS_AT_B))
                assert "Subscribed" in (reply.findtext(f"{C}body") or "")
                request = await inbox.wait(stanza("presence", "subscribe", NEWS_AT_B))
                assert request is not None

                def entry(el: Any) -> bool:
                    return (stanza("message", "chat", NEWS_AT_B)(el)
                            and (el.findtext(f"{C}body") or "").startswith("*Entry f1*"))

                message = await inbox.wait(entry)
                assert message.find("{http://jabber.org/protocol/pubsub#event}event") is None
                await disconnect(client)

            run(scenario())
        finally:
            for proc in (a, b):
                if proc.alive():
                    proc.kill()
