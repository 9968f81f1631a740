"""slixmpp as a real client: STARTTLS + SCRAM-SHA-256, messages, ping, disco, XEP-0077."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from harness import AuthenticationFailed, ServerProcess, connect, disconnect, make_client, run


def use_scram_sha_256(client: Any) -> None:
    client.plugin["feature_mechanisms"].use_mech = "SCRAM-SHA-256"


async def login(server: ServerProcess, jid: str, password: str = "password1",
                plugins: tuple[str, ...] = ("xep_0030", "xep_0199")) -> tuple[Any, list[str]]:
    """Connect over STARTTLS with SCRAM-SHA-256 only; return the client and SASL failures."""
    client = make_client(jid, password, plugins)
    use_scram_sha_256(client)
    failures: list[str] = []
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    client.add_event_handler("failed_auth", lambda stanza: failures.append(stanza["condition"]))

    def failed(*_: Any) -> None:
        if not started.done():
            started.set_exception(AuthenticationFailed(jid))

    client.add_event_handler("failed_all_auth", failed)
    client.connect(host="127.0.0.1", port=server.c2s_port)
    try:
        await asyncio.wait_for(started, 15)
    except AuthenticationFailed:
        client.disconnect()
        raise
    return client, failures


def test_two_accounts_chat_ping_and_disco(shared_server: ServerProcess) -> None:
    alice_jid = shared_server.add_user("alice")
    bob_jid = shared_server.add_user("bob")

    async def scenario() -> None:
        alice, _ = await login(shared_server, alice_jid)
        bob, _ = await login(shared_server, bob_jid)
        assert alice.plugin["feature_mechanisms"].mech.name == "SCRAM-SHA-256"
        assert alice.is_connected() and "starttls" in alice.features
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        bob.add_event_handler("message", inbox.put_nowait)
        got_back: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("message", got_back.put_nowait)

        alice.send_message(mto=bob.boundjid.full, mbody="hello bob", mtype="chat")
        msg = await asyncio.wait_for(inbox.get(), 5)
        assert msg["body"] == "hello bob"
        assert msg["from"].full == alice.boundjid.full  # stamped by the server

        bob.send_message(mto=alice.boundjid.full, mbody="hi alice", mtype="chat")
        reply = await asyncio.wait_for(got_back.get(), 5)
        assert reply["body"] == "hi alice" and reply["from"].full == bob.boundjid.full

        await alice.plugin["xep_0199"].ping(shared_server.domain, timeout=5)
        info = await alice.plugin["xep_0030"].get_info(jid=shared_server.domain, timeout=5)
        features = info["disco_info"]["features"]
        for feature in ("urn:xmpp:ping", "http://jabber.org/protocol/disco#info",
                        "jabber:iq:version", "urn:xmpp:time"):
            assert feature in features
        identities = {(c, t) for c, t, _, _ in info["disco_info"]["identities"]}
        assert ("server", "im") in identities
        await disconnect(alice, bob)

    run(scenario())


def test_register_change_password_and_login_again(shared_server: ServerProcess) -> None:
    jid = f"carol@{shared_server.domain}"

    async def scenario() -> None:
        client = make_client(jid, "first-pass", ("xep_0030", "xep_0077"))
        client.plugin["xep_0077"].force_registration = True
        registered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def on_register(_: Any) -> None:
            iq = client.Iq()
            iq["type"] = "set"
            iq["register"]["username"] = "carol"
            iq["register"]["password"] = "first-pass"
            await iq.send(timeout=5)
            registered.set_result(True)

        client.add_event_handler("register", on_register)
        started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start", lambda _: started.set_result(True))
        client.connect(host="127.0.0.1", port=shared_server.c2s_port)
        await asyncio.wait_for(registered, 15)
        await asyncio.wait_for(started, 15)
        await client.plugin["xep_0077"].change_password("second-pass", jid=shared_server.domain,
                                                        timeout=5)
        await disconnect(client)

        with pytest.raises(AuthenticationFailed):
            await login(shared_server, jid, "first-pass")
        again, _ = await login(shared_server, jid, "second-pass")
        assert again.boundjid.bare == jid
        await disconnect(again)

    run(scenario())


def test_wrong_password_is_not_authorized(shared_server: ServerProcess) -> None:
    jid = shared_server.add_user("dave")

    async def scenario() -> None:
        client = make_client(jid, "not-the-password")
        use_scram_sha_256(client)
        failures: list[str] = []
        failed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        client.add_event_handler("failed_auth", lambda st: failures.append(st["condition"]))
        client.add_event_handler("failed_all_auth",
                                 lambda _: failed.done() or failed.set_result(True))
        client.connect(host="127.0.0.1", port=shared_server.c2s_port)
        await asyncio.wait_for(failed, 15)
        client.disconnect()
        assert failures and failures[0] == "not-authorized"
        # The account still works with the right password.
        ok = await connect(shared_server, jid)
        await disconnect(ok)

    run(scenario())
