"""Blocklist pushes go only to resources that asked for the list (XEP-0191 §3.3, §3.4), and
a client with an older known roster version gets just the changes as pushes (RFC 6121 §2.6.3)."""

from __future__ import annotations

from harness import ServerProcess, connect, disconnect, run

from .im_helpers import Inbox, R, client_for, raw_iq, roster_push

BLOCKING = "urn:xmpp:blocking"


def blocking_push(el: object) -> bool:
    tag = getattr(el, "tag", "")
    return tag == "{jabber:client}iq" and el.get("type") == "set" and any(  # type: ignore[attr-defined]
        child.tag in (f"{{{BLOCKING}}}block", f"{{{BLOCKING}}}unblock") for child in el)  # type: ignore[attr-defined]


def test_blocklist_pushes_only_to_requesting_resources(shared_server: ServerProcess) -> None:
    dan = shared_server.add_user("dan")
    shared_server.add_user("eve")

    async def scenario() -> None:
        asked, asked_in = await client_for(shared_server, dan + "/asked")
        quiet, quiet_in = await client_for(shared_server, dan + "/quiet")
        await raw_iq(asked, "get", f"<blocklist xmlns='{BLOCKING}'/>")
        await raw_iq(quiet, "set", f"<block xmlns='{BLOCKING}'><item jid='eve@localhost'/></block>")
        push = await asked_in.wait(blocking_push)
        assert push.find(f"{{{BLOCKING}}}block/{{{BLOCKING}}}item").get("jid") == "eve@localhost"
        await quiet_in.absent(blocking_push)  # it never requested the blocklist
        await raw_iq(asked, "set", f"<unblock xmlns='{BLOCKING}'/>")  # §3.4: everything
        await asked_in.wait(blocking_push)
        await quiet_in.absent(blocking_push)
        listed = await raw_iq(quiet, "get", f"<blocklist xmlns='{BLOCKING}'/>")
        assert len(listed.find(f"{{{BLOCKING}}}blocklist")) == 0
        await disconnect(asked, quiet)

    run(scenario())


def test_known_old_roster_version_gets_only_the_changes(shared_server: ServerProcess) -> None:
    fay = shared_server.add_user("fay")

    def item(jid: str, remove: bool = False) -> str:
        extra = " subscription='remove'" if remove else ""
        return f"<query xmlns='jabber:iq:roster'><item jid='{jid}'{extra}/></query>"

    async def scenario() -> None:
        editor, editor_in = await client_for(shared_server, fay + "/editor")
        for contact in ("kept@localhost", "gone@localhost"):
            await raw_iq(editor, "set", item(contact))
            await editor_in.push(contact)
        full = await raw_iq(editor, "get", "<query xmlns='jabber:iq:roster' ver=''/>")
        old_ver = full.find(f"{R}query").get("ver")
        assert old_ver
        await raw_iq(editor, "set", item("new@localhost"))
        _, new_ver = await editor_in.push("new@localhost")
        await raw_iq(editor, "set", item("gone@localhost", remove=True))
        _, current = await editor_in.push("gone@localhost")

        # A client that cached the roster at old_ver: an empty result, then one push per change.
        late = await connect(shared_server, fay + "/late", presence=False)
        late_in = Inbox(late)
        reply = await raw_iq(late, "get", f"<query xmlns='jabber:iq:roster' ver='{old_ver}'/>")
        assert reply.find(f"{R}query") is None
        added, ver1 = await late_in.push("new@localhost")
        removed, ver2 = await late_in.push("gone@localhost")
        assert added["subscription"] == "none" and removed["subscription"] == "remove"
        assert (ver1, ver2) == (new_ver, current)
        await late_in.absent(roster_push("kept@localhost"))  # unchanged: not sent again
        # A version the server never handed out gets the whole roster.
        whole = await raw_iq(late, "get", "<query xmlns='jabber:iq:roster' ver='999999'/>")
        query = whole.find(f"{R}query")
        assert query.get("ver") == current
        assert {i.get("jid") for i in query} == {"kept@localhost", "new@localhost"}
        await disconnect(editor, late)

    run(scenario())
