"""XEP-0133 service administration through XEP-0050 ad-hoc commands, from a real admin client.

Each command is run through its form by slixmpp's xep_0050 plugin and its effect is checked from
the outside: logins that now work or fail, messages that arrive, streams that are closed.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from harness import AuthenticationFailed, RawClient, ServerProcess, connect, disconnect, run
from slixmpp.exceptions import IqError

ADMIN = "http://jabber.org/protocol/admin#"
COMMANDS = "http://jabber.org/protocol/commands"
PLUGINS = ("xep_0030", "xep_0004", "xep_0050")


@pytest.fixture(scope="module")
def srv(shared_server: ServerProcess) -> ServerProcess:
    shared_server.add_user("admin")
    shared_server.add_user("mallory")
    return shared_server


async def admin_client(srv: ServerProcess) -> Any:
    return await connect(srv, f"admin@{srv.domain}", plugins=PLUGINS)


async def execute(client: Any, srv: ServerProcess, name: str) -> Any:
    return await client.plugin["xep_0050"].send_command(srv.domain, ADMIN + name, timeout=10)


async def run_command(client: Any, srv: ServerProcess, name: str,
                      values: dict[str, str | list[str]] | None = None,
                      action: str = "complete") -> Any:
    """Execute ``name``; submit ``values`` in its form when it shows one; return the last result."""
    first = await execute(client, srv, name)
    if first["command"]["status"] != "executing":
        return first
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/admin")
    for var, value in (values or {}).items():
        form.add_field(var=var, ftype="text-multi" if isinstance(value, list) else None,
                       value=value)
    return await client.plugin["xep_0050"].send_command(
        srv.domain, ADMIN + name, sessionid=first["command"]["sessionid"], action=action,
        payload=form, timeout=10)


def field_values(result: Any, var: str) -> list[str]:
    form = result["command"]["form"]
    value = form.get_fields()[var].get_value(convert=False)
    return value if isinstance(value, list) else [value]


def notes(result: Any) -> list[str]:
    return [text for _, text in result["command"]["notes"]]


def error_of(exc: IqError) -> tuple[str, str | None]:
    """(stanza condition, XEP-0050 specific condition)."""
    specific = None
    for child in exc.iq["error"].xml:
        if child.tag.startswith("{" + COMMANDS + "}"):
            specific = child.tag.split("}")[1]
    return exc.iq["error"]["condition"], specific


def plain_auth(srv: ServerProcess, local: str, password: str = "password1") -> str:
    """The SASL outcome of a PLAIN login, e.g. '<success' or the failure's condition element."""
    raw = RawClient(srv)
    try:
        raw.open()
        raw.starttls()
        raw.open()
        token = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
        raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        reply = raw.read_until(b">")
        return reply if "<success" in reply else raw.read_until(b"</failure>")
    finally:
        raw.close()


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_non_admin_sees_no_admin_command_and_is_forbidden(srv: ServerProcess) -> None:
    async def scenario() -> None:
        client = await connect(srv, f"mallory@{srv.domain}", plugins=PLUGINS)
        items = await client.plugin["xep_0050"].get_commands(srv.domain, timeout=10)
        assert not [i for i in items["disco_items"]["items"] if i[1].startswith(ADMIN)]
        for name in ("add-user", "get-online-users-num", "shutdown"):
            with pytest.raises(IqError) as exc:
                await execute(client, srv, name)
            assert error_of(exc.value)[0] == "forbidden"
        await disconnect(client)

    run(scenario())


def test_admin_discovers_the_commands(srv: ServerProcess) -> None:
    async def scenario() -> None:
        client = await admin_client(srv)
        info = await client.plugin["xep_0030"].get_info(jid=srv.domain, timeout=10)
        assert COMMANDS in info["disco_info"]["features"]
        items = await client.plugin["xep_0050"].get_commands(srv.domain, timeout=10)
        nodes = {i[1] for i in items["disco_items"]["items"]}
        for name in ("add-user", "delete-user", "disable-user", "reenable-user",
                     "change-user-password", "get-user-roster", "get-user-lastlogin",
                     "user-stats", "get-registered-users-num", "get-online-users-num",
                     "get-active-users-num", "get-online-users-list", "announce", "set-motd",
                     "delete-motd", "restart", "shutdown"):
            assert ADMIN + name in nodes
        node_info = await client.plugin["xep_0030"].get_info(
            jid=srv.domain, node=ADMIN + "add-user", timeout=10)
        assert ("automation", "command-node") in {
            (i[0], i[1]) for i in node_info["disco_info"]["identities"]}
        await disconnect(client)

    run(scenario())


def test_add_user_who_then_logs_in(srv: ServerProcess) -> None:
    async def scenario() -> None:
        client = await admin_client(srv)
        jid = f"newbie@{srv.domain}"
        with pytest.raises(IqError) as exc:
            await run_command(client, srv, "add-user", {
                "accountjid": jid, "password": "s3cret", "password-verify": "typo"})
        assert error_of(exc.value) == ("bad-request", "bad-payload")
        done = await run_command(client, srv, "add-user", {
            "accountjid": jid, "password": "s3cret", "password-verify": "s3cret"})
        assert done["command"]["status"] == "completed"
        newbie = await connect(srv, jid, "s3cret")
        with pytest.raises(IqError) as exc:
            await run_command(client, srv, "add-user", {
                "accountjid": jid, "password": "x", "password-verify": "x"})
        assert error_of(exc.value)[0] == "conflict"
        await disconnect(newbie, client)

    run(scenario())


def test_delete_user_ends_the_session_and_login(srv: ServerProcess) -> None:
    victim = srv.add_user("doomed")

    async def scenario() -> None:
        client = await admin_client(srv)
        doomed = await connect(srv, victim)
        done = await run_command(client, srv, "delete-user", {"accountjids": [victim]})
        assert f"{victim} deleted" in notes(done)
        await asyncio.wait_for(doomed.disconnected, 5)
        with pytest.raises(AuthenticationFailed):
            await connect(srv, victim, timeout=5)
        await disconnect(client)

    run(scenario())


def test_disable_ends_sessions_and_reenable_restores_login(srv: ServerProcess) -> None:
    user = srv.add_user("banned")

    async def scenario() -> None:
        client = await admin_client(srv)
        banned = await connect(srv, user)
        await run_command(client, srv, "disable-user", {"accountjids": [user]})
        await asyncio.wait_for(banned.disconnected, 5)
        assert "account-disabled" in plain_auth(srv, "banned")
        await run_command(client, srv, "reenable-user", {"accountjids": [user]})
        assert "<success" in plain_auth(srv, "banned")
        await disconnect(client)

    run(scenario())


def test_change_user_password(srv: ServerProcess) -> None:
    user = srv.add_user("forgetful")

    async def scenario() -> None:
        client = await admin_client(srv)
        await run_command(client, srv, "change-user-password",
                          {"accountjid": user, "password": "n3w-pass"})
        assert "not-authorized" in plain_auth(srv, "forgetful", "password1")
        assert "<success" in plain_auth(srv, "forgetful", "n3w-pass")
        await disconnect(client)

    run(scenario())


def test_announcement_reaches_online_users(srv: ServerProcess) -> None:
    user = srv.add_user("listener")

    async def scenario() -> None:
        client = await admin_client(srv)
        listener = await connect(srv, user)
        got: list[Any] = []
        listener.add_event_handler("message", got.append)
        done = await run_command(client, srv, "announce",
                                 {"announcement": ["Maintenance tonight.", "Sorry!"]})
        assert done["command"]["status"] == "completed"
        await wait_for(lambda: any("Maintenance tonight." in m["body"] for m in got))
        message = next(m for m in got if "Maintenance" in m["body"])
        assert str(message["from"]) == srv.domain
        assert message["body"] == "Maintenance tonight.\nSorry!"
        await disconnect(listener, client)

    run(scenario())


def test_message_of_the_day_at_login(srv: ServerProcess) -> None:
    srv.add_user("reader")

    async def scenario() -> None:
        client = await admin_client(srv)
        await run_command(client, srv, "set-motd", {"motd": ["Welcome to the feeds!"]})
        edit = await execute(client, srv, "edit-motd")  # XEP-0133 §4.25: prefilled
        assert "Welcome to the feeds!" in str(edit)
        await client.plugin["xep_0050"].send_command(
            srv.domain, ADMIN + "edit-motd", sessionid=edit["command"]["sessionid"],
            action="cancel", timeout=10)
        raw = RawClient(srv)
        raw.login("reader")
        assert "Welcome to the feeds!" in raw.read_until(b"</message>")
        raw.close()
        await run_command(client, srv, "delete-motd")
        edit = await execute(client, srv, "edit-motd")
        assert "Welcome to the feeds!" not in str(edit)
        await disconnect(client)

    run(scenario())


def test_counts_lists_and_user_information(srv: ServerProcess) -> None:
    user = srv.add_user("counted")

    async def scenario() -> None:
        client = await admin_client(srv)
        counted = await connect(srv, user)
        online = await run_command(client, srv, "get-online-users-list")
        assert user in field_values(online, "onlineuserjids")
        assert f"admin@{srv.domain}" in field_values(online, "onlineuserjids")
        number = await run_command(client, srv, "get-online-users-num")
        assert int(field_values(number, "onlineusersnum")[0]) >= 2
        active = await run_command(client, srv, "get-active-users-num")
        assert int(field_values(active, "activeusersnum")[0]) >= 2
        registered = await run_command(client, srv, "get-registered-users-num")
        assert int(field_values(registered, "registeredusersnum")[0]) >= 3
        last = await run_command(client, srv, "get-user-lastlogin", {"accountjids": [user]})
        assert field_values(last, "lastlogin")[0].endswith("Z")  # XEP-0082 DateTime
        stats = await run_command(client, srv, "user-stats", {"accountjid": user})
        assert field_values(stats, "onlineresources") != [""]
        assert field_values(stats, "ipaddresses") == ["127.0.0.1"]
        roster = await run_command(client, srv, "get-user-roster", {"accountjids": [user]})
        assert "jabber:iq:roster" in str(roster)
        await disconnect(counted, client)

    run(scenario())


def test_session_cancel_bad_action_and_expired_session(srv: ServerProcess) -> None:
    async def scenario() -> None:
        client = await admin_client(srv)
        xep50 = client.plugin["xep_0050"]
        first = await execute(client, srv, "add-user")
        sid = first["command"]["sessionid"]
        assert first["command"]["status"] == "executing"
        with pytest.raises(IqError) as exc:  # nothing before the first stage
            await xep50.send_command(srv.domain, ADMIN + "add-user", sessionid=sid,
                                     action="prev", timeout=10)
        assert error_of(exc.value) == ("bad-request", "bad-action")
        canceled = await xep50.send_command(srv.domain, ADMIN + "add-user", sessionid=sid,
                                            action="cancel", timeout=10)
        assert canceled["command"]["status"] == "canceled"
        with pytest.raises(IqError) as exc:
            await xep50.send_command(srv.domain, ADMIN + "add-user", sessionid=sid,
                                     action="complete", timeout=10)
        assert error_of(exc.value) == ("not-allowed", "session-expired")
        with pytest.raises(IqError) as exc:
            await xep50.send_command(srv.domain, ADMIN + "add-user", sessionid="invented",
                                     action="complete", timeout=10)
        assert error_of(exc.value) == ("bad-request", "bad-sessionid")
        with pytest.raises(IqError) as exc:
            await xep50.send_command(srv.domain, ADMIN + "no-such-command", timeout=10)
        assert error_of(exc.value)[0] == "item-not-found"
        await disconnect(client)

    run(scenario())


def test_shutdown_announces_and_stops_gracefully(server: ServerProcess) -> None:
    server.add_user("admin")
    user = server.add_user("witness")

    async def scenario() -> None:
        client = await admin_client(server)
        witness = await connect(server, user)
        got: list[str] = []
        witness.add_event_handler("message", lambda m: got.append(m["body"]))
        done = await run_command(client, server, "shutdown",
                                 {"delay": "0", "announcement": ["Going down now."]})
        assert done["command"]["status"] == "completed"
        await asyncio.wait_for(witness.disconnected, 10)
        assert "Going down now." in got
        await disconnect(client)

    run(scenario())
    assert server.proc is not None and server.proc.wait(15) == 0
