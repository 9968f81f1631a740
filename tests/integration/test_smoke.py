"""The server starts, a slixmpp client logs in over STARTTLS and pings it."""

from __future__ import annotations

from harness import ServerProcess, connect, disconnect, run


def test_login_and_ping(server: ServerProcess) -> None:
    jid = server.add_user("alice")

    async def scenario() -> None:
        client = await connect(server, jid)
        info = await client.plugin["xep_0030"].get_info(jid=server.domain)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        await client.plugin["xep_0199"].ping(server.domain, timeout=5)
        await disconnect(client)

    run(scenario())
