"""Feed subscriptions and the address policy, end to end: private addresses in any numeric
form are refused at once, a redirect refusal names the blocked target, and a feed whose site
cannot be reached is refused whatever the reason (no such name, connection refused)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import Inbox, ThreadedFeedServer, chat, rss  # noqa: E402
from harness import ServerProcess, connect, disconnect, reserved_port, run  # noqa: E402

SERVICE = "pubsub.localhost"


def test_subscriptions_respect_the_address_policy(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/feed.xml", rss("Local", ["x1"]), content_type="application/rss+xml")
        port = int(web.url("/feed.xml").split(":")[2].split("/")[0])
        # Only the name "localhost" is allowed; 127.0.0.1 written as an address is not.
        web.server.redirect("/r", f"http://127.0.0.1:{port}/feed.xml", 302)
        server = ServerProcess(tmp_path, extra={"feeds": {"allow_hosts": ["localhost"]}})
        server.start()
        try:
            jid = server.add_user("mallory")
            bystander = server.add_user("bystander")

            async def scenario() -> None:
                other = await connect(server, bystander)
                await other.plugin["xep_0199"].ping(SERVICE.split(".", 1)[1], timeout=10)
                client = await connect(server, jid)
                inbox = Inbox(client)
                for host in ("127.000.000.001", "0177.0.0.1", "[2002:7f00:1::]"):
                    reply = await chat(client, inbox, SERVICE,
                                       f"subscribe http://{host}:{port}/feed.xml")
                    assert "private or local address" in reply, reply
                reply = await chat(client, inbox, SERVICE,
                                   f"subscribe http://localhost:{port}/r")
                assert "127.0.0.1 is a private or local address" in reply, reply
                for url in ("http://nonexistent.invalid/feed.xml",
                            f"http://localhost:{reserved_port()}/feed.xml"):  # nothing listens
                    reply = await chat(client, inbox, SERVICE, f"subscribe {url}")
                    assert "Cannot fetch" in reply, reply
                assert "no feeds yet" in await chat(client, inbox, SERVICE, "list")
                await other.plugin["xep_0199"].ping(SERVICE.split(".", 1)[1], timeout=10)
                await disconnect(client, other)

            run(scenario())
            assert web.hits("/feed.xml") == 0, "nothing may reach a refused address"
        finally:
            server.kill()
