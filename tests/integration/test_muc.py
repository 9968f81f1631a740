"""XEP-0045 multi-user chat on conference.<domain>, driven by slixmpp's xep_0045 plugin."""

from __future__ import annotations

import asyncio

import pytest
from harness import ServerProcess, connect, disconnect, round_trip, run
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError

from .muc_support import MUC_USER, PLUGINS, Inbox, clients, codes


def test_enter_talk_history_subject_nick_change_and_leave(shared_server: ServerProcess) -> None:
    room = JID(f"lobby@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob, carol = await clients(shared_server, "m1alice", "m1bob", "m1carol")
        muc_a, muc_b, muc_c = (c.plugin["xep_0045"] for c in (alice, bob, carol))
        inbox_a, inbox_b = Inbox(alice), Inbox(bob)

        # §10.1.2: the creator gets owner/moderator and statuses 110 + 201; empty subject.
        own, subject, occupants, history = await muc_a.join_muc_wait(room, "alice", timeout=5)
        assert {110, 201} <= codes(own)
        assert own["muc"]["affiliation"] == "owner" and own["muc"]["role"] == "moderator"
        assert subject.xml.find("{jabber:client}subject") is not None  # §7.2.16: empty subject
        assert not subject["subject"] and history == []
        assert [p["from"].resource for p in occupants] == ["alice"]  # only itself

        alice.send_message(mto=room, mbody="first!", mtype="groupchat")
        echo = await inbox_a.next(lambda s: s["body"] == "first!")
        assert echo["from"] == JID(f"{room}/alice") and echo["type"] == "groupchat"
        muc_a.set_subject(room, "Weather talk")
        await inbox_a.next(lambda s: s["subject"] == "Weather talk")

        # A late joiner: occupants first, its own presence (110, no 201), history, subject.
        own, subject, occupants, history = await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert 110 in codes(own) and 201 not in codes(own)
        assert own["muc"]["role"] == "participant" and own["muc"]["affiliation"] == "none"
        # §7.2.3: the others' presence first, its own last
        assert [p["from"].resource for p in occupants] == ["alice", "bob"]
        assert [m["body"] for m in history] == ["first!"]
        assert history[0]["delay"]["from"] == room and history[0]["delay"]["stamp"] is not None
        assert subject["subject"] == "Weather talk" and subject["from"] == JID(f"{room}/alice")
        joined = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/bob"))
        assert joined["type"] == "available" and 110 not in codes(joined)
        # semi-anonymous: the moderator sees bob's real JID
        assert joined["muc"]["jid"] == bob.boundjid

        # §7.2.9: a nickname in use is a conflict
        with pytest.raises(PresenceError) as failed:
            await muc_c.join_muc_wait(room, "alice", timeout=5)
        assert failed.value.condition == "conflict"

        # §7.4 groupchat reflected to everyone, §7.5 private message
        inbox_a.drain()
        bob.send_message(mto=room, mbody="hello all", mtype="groupchat")
        for inbox in (inbox_a, inbox_b):
            got = await inbox.next(lambda s: s["body"] == "hello all")
            assert got["from"] == JID(f"{room}/bob")
        bob.send_message(mto=JID(f"{room}/alice"), mbody="psst", mtype="chat")
        private = await inbox_a.next(lambda s: s["body"] == "psst")
        assert private["from"] == JID(f"{room}/bob") and private["type"] == "chat"

        # §8.1: a participant may not change the subject by default
        muc_b.set_subject(room, "mine now")
        refused = await inbox_b.next(lambda s: s["type"] == "error")
        assert refused["error"]["condition"] == "forbidden"

        # §7.6: nickname change, 303 with the new nick, then the new presence
        assert await muc_b.set_self_nick(room, "robert", timeout=5) == "robert"
        gone = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/bob"))
        assert gone["type"] == "unavailable" and codes(gone) == {303}
        assert gone["muc"]["item_nick"] == "robert"
        back = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/robert"))
        assert back["type"] == "available"

        # §7.14: leaving; the leaver gets its own unavailable with 110
        inbox_b.drain()
        muc_b.leave_muc(room, "robert")
        left = await inbox_b.next(lambda s: s["from"] == JID(f"{room}/robert"))
        assert left["type"] == "unavailable" and 110 in codes(left)
        seen = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/robert"))
        assert seen["type"] == "unavailable" and 110 not in codes(seen)
        assert muc_a.get_roster(room) == ["alice"]

        # a non-occupant cannot talk in the room (§7.4)
        bob.send_message(mto=room, mbody="from outside", mtype="groupchat")
        refused = await inbox_b.next(lambda s: s["type"] == "error")
        assert refused["error"]["condition"] == "not-acceptable"
        await disconnect(alice, bob, carol)

    run(scenario())


def test_disconnect_removes_the_occupant(shared_server: ServerProcess) -> None:
    room = JID(f"drop@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob = await clients(shared_server, "m2alice", "m2bob")
        inbox_a = Inbox(alice)
        await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=5)
        await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=5)
        bob.abort()  # no unavailable presence from the client
        gone = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/bob")
                                  and s["type"] == "unavailable")
        assert gone["muc"]["role"] == "none"
        # the nickname is free again
        bob2 = (await clients(shared_server, "m2bob2"))[0]
        own, *_ = await bob2.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=5)
        assert 110 in codes(own)
        await disconnect(alice, bob2)

    run(scenario())


def test_disco_config_selfping_kick_ban_destroy(shared_server: ServerProcess) -> None:
    service = f"conference.{shared_server.domain}"
    room = JID(f"club@{service}")

    async def scenario() -> None:
        alice, bob, carol = await clients(shared_server, "m3alice", "m3bob", "m3carol")
        muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
        disco = alice.plugin["xep_0030"]
        inbox_a, inbox_b = Inbox(alice), Inbox(bob)

        # the server lists the service; the service is a conference/text MUC (§6.1)
        items = await disco.get_items(jid=shared_server.domain, timeout=5)
        assert service in {i[0] for i in items["disco_items"]["items"]}
        info = await disco.get_info(jid=service, timeout=5)
        assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]
        assert ("conference", "text") in {(c, t) for c, t, _, _ in info["disco_info"]["identities"]}

        await muc_a.join_muc_wait(room, "alice", timeout=5)
        # §10.2: the owner configures the room
        form = await muc_a.get_room_config(room, timeout=5)
        fields = form.get_fields()
        assert "muc#roomconfig_persistentroom" in fields
        submit = alice.plugin["xep_0004"].make_form(ftype="submit")
        submit.add_field(var="FORM_TYPE", ftype="hidden",
                         value="http://jabber.org/protocol/muc#roomconfig")
        submit.add_field(var="muc#roomconfig_roomname", value="The Club")
        submit.add_field(var="muc#roomconfig_persistentroom", ftype="boolean", value=True)
        submit.add_field(var="muc#roomconfig_whois", value="anyone")
        await muc_a.set_room_config(room, submit, timeout=5)
        notice = await inbox_a.next(lambda s: s["type"] == "groupchat" and 104 in codes(s))
        assert notice["from"] == room
        # bob may not read the configuration
        with pytest.raises(IqError) as denied:
            await muc_b.get_room_config(room, timeout=5)
        assert denied.value.condition == "forbidden"

        info = await disco.get_info(jid=room, timeout=5)
        features = info["disco_info"]["features"]
        for feature in ("http://jabber.org/protocol/muc", "muc_persistent", "muc_public",
                        "muc_open", "muc_unmoderated", "muc_nonanonymous"):
            assert feature in features
        assert ("conference", "text", None, "The Club") in info["disco_info"]["identities"]
        items = await disco.get_items(jid=service, timeout=5)
        assert (str(room), None, "The Club") in items["disco_items"]["items"]

        # XEP-0410 self-ping: result when joined, not-acceptable otherwise
        own, *_ = await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert 100 in codes(own)  # non-anonymous room (§7.2.4)
        await bob.plugin["xep_0199"].send_ping(JID(f"{room}/bob"), timeout=5)
        with pytest.raises(IqError) as not_joined:
            await carol.plugin["xep_0199"].send_ping(JID(f"{room}/carol"), timeout=5)
        assert not_joined.value.condition == "not-acceptable"

        # §8.2 kick: role none, status 307
        inbox_b.drain()
        await muc_a.set_role(room, "bob", "none", reason="calm down", timeout=5)
        kicked = await inbox_b.next(lambda s: s["from"] == JID(f"{room}/bob"))
        assert kicked["type"] == "unavailable" and {307, 110} <= codes(kicked)
        with pytest.raises(IqError) as after_kick:
            await bob.plugin["xep_0199"].send_ping(JID(f"{room}/bob"), timeout=5)
        assert after_kick.value.condition == "not-acceptable"
        # a participant cannot kick the owner
        await muc_b.join_muc_wait(room, "bob", timeout=5)
        with pytest.raises(IqError) as no_power:
            await muc_b.set_role(room, "alice", "none", timeout=5)
        assert no_power.value.condition == "forbidden"

        # §9.1 ban: outcast, status 301, listed, kept out
        inbox_b.drain()
        await muc_a.set_affiliation(room, "outcast", jid=bob.boundjid.bare, timeout=5)
        banned = await inbox_b.next(lambda s: s["from"] == JID(f"{room}/bob"))
        assert banned["type"] == "unavailable" and 301 in codes(banned)
        assert await muc_a.get_affiliation_list(room, "outcast", timeout=5) == [
            JID(bob.boundjid.bare)]
        with pytest.raises(PresenceError) as kept_out:
            await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert kept_out.value.condition == "forbidden"

        # §10.9 destroy: occupants are told, the room is gone
        inbox_a.drain()
        await muc_a.destroy(room, reason="closing time", altroom=f"newclub@{service}", timeout=5)
        end = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/alice"))
        assert end["type"] == "unavailable"
        destroyed = end.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}destroy")
        assert destroyed is not None and destroyed.get("jid") == f"newclub@{service}"  # §10.9
        assert destroyed.findtext(f"{{{MUC_USER}}}reason") == "closing time"
        with pytest.raises(IqError) as gone:
            await disco.get_info(jid=room, timeout=5)
        assert gone.value.condition == "item-not-found"
        await disconnect(alice, bob, carol)

    run(scenario())


def test_persistent_room_survives_restart(server: ServerProcess) -> None:
    room = JID(f"archive@conference.{server.domain}")

    async def configure() -> None:
        (alice,) = await clients(server, "m4alice")
        muc = alice.plugin["xep_0045"]
        await muc.join_muc_wait(room, "alice", timeout=5)
        submit = alice.plugin["xep_0004"].make_form(ftype="submit")
        submit.add_field(var="muc#roomconfig_persistentroom", ftype="boolean", value=True)
        submit.add_field(var="muc#roomconfig_roomname", value="Archive")
        await muc.set_room_config(room, submit, timeout=5)
        muc.set_subject(room, "kept")
        await round_trip(alice, room.domain)  # the room has handled the subject
        await disconnect(alice)

    async def check() -> None:
        alice = await connect(server, f"m4alice@{server.domain}", plugins=PLUGINS)
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=5)
        assert "muc_persistent" in info["disco_info"]["features"]
        own, subject, *_ = await alice.plugin["xep_0045"].join_muc_wait(room, "al", timeout=5)
        assert own["muc"]["affiliation"] == "owner" and 201 not in codes(own)
        assert subject["subject"] == "kept"
        await disconnect(alice)

    run(configure())
    server.restart(hard=True)
    run(check())


def test_occupants_hear_of_a_shutdown(server: ServerProcess) -> None:
    """Status 332: a graceful stop takes every occupant out of its rooms, with notice."""
    room = JID(f"closing@conference.{server.domain}")

    async def scenario() -> None:
        (alice,) = await clients(server, "m5alice")
        inbox = Inbox(alice)
        await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=5)
        inbox.drain()
        await asyncio.get_running_loop().run_in_executor(None, server.stop)
        gone = await inbox.next(lambda s: s["from"] == JID(f"{room}/alice"))
        assert gone["type"] == "unavailable" and {332, 110} <= codes(gone)
        assert gone["muc"]["role"] == "none"

    run(scenario())
