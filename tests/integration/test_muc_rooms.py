"""XEP-0045 room configuration applied, driven by slixmpp: passwords (§7.2.6), moderated rooms
with visitors and voice (§7.13, §8.3–8.6), members-only removals (§9.4, §10.2: 321, 322),
whois changes (172/173), invitations (§7.8.2 mediated, XEP-0249 direct), registration (§7.10),
the §17.3 rejoin resync, multi-session nicks and the 333 removal of a bouncing session."""

from __future__ import annotations

import pytest
from harness import ServerProcess, connect, disconnect, run
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError

from .muc_support import MUC, MUC_USER, PLUGINS, Inbox, clients, codes, configure, iq

REQUEST = f"{MUC}#request"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
XDATA = "jabber:x:data"


def test_password_moderation_voice_requests(shared_server: ServerProcess) -> None:
    room = JID(f"guarded@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob = await clients(shared_server, "r1alice", "r1bob")
        muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
        inbox_a, inbox_b = Inbox(alice), Inbox(bob)
        await muc_a.join_muc_wait(room, "alice", timeout=5)
        await configure(alice, room, roomsecret="s3cret", passwordprotectedroom=True,
                        moderatedroom=True)
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=5)
        assert {"muc_passwordprotected", "muc_moderated"} <= set(
            info["disco_info"]["features"])
        # §7.2.6: no password, or a wrong one, is not-authorized
        for password in (None, "guess"):
            with pytest.raises(PresenceError) as refused:
                await muc_b.join_muc_wait(room, "bob", password=password, timeout=5)
            assert refused.value.condition == "not-authorized"
        # §15.5.3: a protected room needs a secret; the form is refused, nothing changes
        with pytest.raises(IqError) as bad:
            await configure(alice, room, roomsecret="")
        assert bad.value.condition == "not-acceptable"

        own, *_ = await muc_b.join_muc_wait(room, "bob", password="s3cret", timeout=5)
        assert own["muc"]["role"] == "visitor"  # moderated: no voice without an affiliation
        bob.send_message(mto=room, mbody="can I talk?", mtype="groupchat")
        refused_msg = await inbox_b.next(lambda s: s["type"] == "error")
        assert refused_msg["error"]["condition"] == "forbidden"

        # §7.13 the visitor asks for voice; §8.6 the moderator gets the approval form...
        muc_b.request_voice(room, "participant")
        request = await inbox_a.next(lambda s: s.xml.find(f"{{{XDATA}}}x") is not None)
        values = request["form"]["values"]
        assert values["FORM_TYPE"] in (REQUEST, [REQUEST]) and request["from"] == room
        assert values["muc#roomnick"] == "bob"
        assert request["form"].get_fields()["muc#request_allow"]["type"] == "boolean"
        # ...and approves it by submitting it back
        answer = alice.make_message(mto=room)
        form = answer["form"]
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden", value=REQUEST)
        form.add_field(var="muc#roomnick", value="bob")
        form.add_field(var="muc#request_allow", ftype="boolean", value=True)
        answer.send()
        voiced = await inbox_b.next(lambda s: s["from"] == JID(f"{room}/bob")
                                    and s["muc"]["role"] == "participant")
        assert 110 in codes(voiced)
        bob.send_message(mto=room, mbody="thanks", mtype="groupchat")
        await inbox_a.next(lambda s: s["body"] == "thanks")

        # §8.4 revoking voice makes bob a visitor again
        await muc_a.set_role(room, "bob", "visitor", timeout=5)
        await inbox_b.next(lambda s: s["from"] == JID(f"{room}/bob")
                           and s["muc"]["role"] == "visitor")
        # §8.7 an owner makes bob a moderator; a later configuration change leaves him one
        await muc_a.set_role(room, "bob", "moderator", timeout=5)
        await configure(alice, room, roomname="Guarded")
        assert sorted(await muc_a.get_roles_list(room, "moderator", timeout=5)) == [
            "alice", "bob"]
        # §8.4: nobody silences an owner
        with pytest.raises(IqError) as nope:
            await muc_a.set_role(room, "alice", "visitor", timeout=5)
        assert nope.value.condition == "not-allowed"
        await disconnect(alice, bob)

    run(scenario())


def invited(stanza: object) -> bool:
    return stanza.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite") is not None  # type: ignore[attr-defined]


def test_members_only_whois_and_invitations(shared_server: ServerProcess) -> None:
    room = JID(f"club@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob, carol, dave = await clients(shared_server, "r2alice", "r2bob", "r2carol",
                                                "r2dave", plugins=(*PLUGINS, "xep_0249"))
        muc_a = alice.plugin["xep_0045"]
        inbox_a, inbox_b, inbox_c, inbox_d = (Inbox(c) for c in (alice, bob, carol, dave))
        await muc_a.join_muc_wait(room, "alice", timeout=5)
        await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=5)
        await carol.plugin["xep_0045"].join_muc_wait(room, "carol", timeout=5)

        # §10.2.1: becoming non-anonymous is announced with 104 and 172, and back with 173
        await configure(alice, room, whois="anyone")
        notice = await inbox_b.next(lambda s: s["type"] == "groupchat" and 104 in codes(s))
        assert codes(notice) == {104, 172}
        await configure(alice, room, whois="moderators")
        notice = await inbox_b.next(lambda s: s["type"] == "groupchat" and 104 in codes(s))
        assert codes(notice) == {104, 173}

        # §10.2: a room turned members-only removes who is not a member (322)
        await muc_a.set_affiliation(room, "member", jid=bob.boundjid.bare, timeout=5)
        await configure(alice, room, membersonly=True)
        out = await inbox_c.next(lambda s: s["from"] == JID(f"{room}/carol")
                                 and s["type"] == "unavailable")
        assert {322, 110} <= codes(out)
        # §9.4: revoking membership in a members-only room removes the occupant (321)
        await muc_a.set_affiliation(room, "none", jid=bob.boundjid.bare, timeout=5)
        out = await inbox_b.next(lambda s: s["from"] == JID(f"{room}/bob")
                                 and s["type"] == "unavailable")
        assert {321, 110} <= codes(out)
        seen = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/bob")
                                  and s["type"] == "unavailable")
        assert 321 in codes(seen) and 110 not in codes(seen)
        with pytest.raises(PresenceError) as kept_out:
            await carol.plugin["xep_0045"].join_muc_wait(room, "carol", timeout=5)
        assert kept_out.value.condition == "registration-required"

        # §7.8.2 mediated invitation: from the room, naming the inviter; in a members-only
        # room the invitee becomes a member and may enter
        muc_a.invite(room, carol.boundjid.bare, reason="come back")
        invitation = await inbox_c.next(invited)
        assert invitation["from"] == room
        assert JID(invitation["muc"]["invite"]["from"]).bare == alice.boundjid.bare
        assert invitation["muc"]["invite"]["reason"] == "come back"
        own, *_ = await carol.plugin["xep_0045"].join_muc_wait(room, "carol", timeout=5)
        assert own["muc"]["affiliation"] == "member"
        # §7.8.3 a declined invitation goes back to the inviter
        muc_a.invite(room, dave.boundjid.bare)
        await inbox_d.next(invited)
        dave.plugin["xep_0045"].decline(room, alice.boundjid.full, reason="busy")
        declined = await inbox_a.next(
            lambda s: s.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}decline") is not None)
        assert declined["from"] == room and declined["muc"]["decline"]["reason"] == "busy"
        assert JID(declined["muc"]["decline"]["from"]) == dave.boundjid.bare

        # XEP-0249 direct invitations pass through the server untouched
        alice.plugin["xep_0249"].send_invitation(dave.boundjid.bare, room, reason="direct")
        direct = await inbox_d.next(lambda s: s.xml.find("{jabber:x:conference}x") is not None)
        assert direct["groupchat_invite"]["jid"] == room
        assert direct["groupchat_invite"]["reason"] == "direct"
        await disconnect(alice, bob, carol, dave)

    run(scenario())


def test_rejoin_resync_history_and_shared_nicks(shared_server: ServerProcess) -> None:
    room = JID(f"sync@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob = await clients(shared_server, "r3alice", "r3bob")
        muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
        inbox_a, inbox_b = Inbox(alice), Inbox(bob)
        await muc_a.join_muc_wait(room, "alice", timeout=5)
        muc_a.set_subject(room, "Topic")
        await inbox_a.next(lambda s: s["subject"] == "Topic")
        # a message with a subject and a body is a message: kept in history, topic unchanged
        alice.send_message(mto=room, mbody="hello", msubject="greeting", mtype="groupchat")
        await inbox_a.next(lambda s: s["body"] == "hello")
        _, subject, _, history = await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert [(m["subject"], m["body"]) for m in history] == [("greeting", "hello")]
        assert subject["subject"] == "Topic"

        # §17.3: a join presence from a current occupant gets the whole state again
        own, subject, occupants, history = await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert 110 in codes(own) and subject["subject"] == "Topic"
        assert [p["from"].resource for p in occupants] == ["alice", "bob"]
        assert [m["body"] for m in history] == ["hello"]

        # §7.2.8 a second session of alice shares her nick...
        alice2 = await connect(shared_server, f"r3alice@{shared_server.domain}/second",
                               plugins=PLUGINS)
        inbox_a2 = Inbox(alice2)
        own, _, occupants, _ = await alice2.plugin["xep_0045"].join_muc_wait(
            room, "alice", timeout=5)
        assert 110 in codes(own) and own["muc"]["affiliation"] == "owner"
        assert sorted(p["from"].resource for p in occupants) == ["alice", "bob"]
        # ...both sessions get the room's messages
        bob.send_message(mto=room, mbody="to both", mtype="groupchat")
        for inbox in (inbox_a, inbox_a2):
            await inbox.next(lambda s: s["body"] == "to both")
        # ...and one leaving does not take the nick out of the room
        inbox_b.drain()
        alice2.plugin["xep_0045"].leave_muc(room, "alice")
        gone = await inbox_a2.next(lambda s: s["type"] == "unavailable")
        assert 110 in codes(gone)
        still = await inbox_b.next(lambda s: s["from"] == JID(f"{room}/alice"))
        assert still["type"] == "available"
        await alice.plugin["xep_0199"].send_ping(JID(f"{room}/alice"), timeout=5)
        await disconnect(alice, alice2, bob)

    run(scenario())


def test_registration_and_bounced_sessions(shared_server: ServerProcess) -> None:
    room = JID(f"desk@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob, carol = await clients(shared_server, "r4alice", "r4bob", "r4carol")
        muc_a = alice.plugin["xep_0045"]
        inbox_a = Inbox(alice)
        await muc_a.join_muc_wait(room, "alice", timeout=5)

        # §7.10: the registration form, then a registered nick making bob a member
        form = await iq(bob, "get", room, "<query xmlns='jabber:iq:register'/>")
        fields = form.xml.findall(".//{jabber:x:data}field")
        assert {"muc#register_roomnick": "text-single"}.items() <= {
            f.get("var"): f.get("type") for f in fields}.items()
        await iq(bob, "set", room, """
            <query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>
              <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>
              <field var='muc#register_roomnick'><value>bobby</value></field>
            </x></query>""")
        assert await muc_a.get_affiliation_list(room, "member", timeout=5) == [
            JID(bob.boundjid.bare)]
        again = await iq(bob, "get", room, "<query xmlns='jabber:iq:register'/>")
        assert again.xml.find(".//{jabber:iq:register}registered") is not None
        # §7.12 the reserved nick, and §7.10 nobody else may take it
        nick = await iq(bob, "get", room, f"<query xmlns='{DISCO_INFO}' node='x-roomuser-item'/>")
        identity = nick.xml.find(f".//{{{DISCO_INFO}}}identity")
        assert identity is not None and identity.get("name") == "bobby"
        with pytest.raises(PresenceError) as taken:
            await carol.plugin["xep_0045"].join_muc_wait(room, "bobby", timeout=5)
        assert taken.value.condition == "conflict"
        with pytest.raises(IqError) as taken_iq:
            await iq(carol, "set", room, """
                <query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>
                  <field var='muc#register_roomnick'><value>bobby</value></field>
                </x></query>""")
        assert taken_iq.value.condition == "conflict"

        # XEP-0410 §3.4: a session that bounces the room's stanzas is removed with 333
        await carol.plugin["xep_0045"].join_muc_wait(room, "carol", timeout=5)
        carol.send_raw(f"<presence to='{room}/carol' type='error'>"
                       "<error type='cancel'><service-unavailable "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
        gone = await inbox_a.next(lambda s: s["from"] == JID(f"{room}/carol")
                                  and s["type"] == "unavailable")
        assert 333 in codes(gone)
        with pytest.raises(IqError) as not_joined:
            await carol.plugin["xep_0199"].send_ping(JID(f"{room}/carol"), timeout=5)
        assert not_joined.value.condition == "not-acceptable"
        await disconnect(alice, bob, carol)

    run(scenario())


def test_limits_private_messages_invites_history_and_broadcast(
        shared_server: ServerProcess) -> None:
    room = JID(f"tight@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob, carol, dave = await clients(shared_server, "r5alice", "r5bob", "r5carol",
                                                "r5dave")
        muc_a = alice.plugin["xep_0045"]
        inbox_a, inbox_b, inbox_c = Inbox(alice), Inbox(bob), Inbox(carol)
        await muc_a.join_muc_wait(room, "alice", timeout=5)
        for n in range(3):
            alice.send_message(mto=room, mbody=f"h{n}", mtype="groupchat")
            await inbox_a.next(lambda s, n=n: s["body"] == f"h{n}")
        form = await muc_a.get_room_config(room, timeout=5)
        assert form.get_fields()["muc#roomconfig_maxusers"]["type"] == "list-single"
        await configure(alice, room, maxusers="2", allowpm="none", allowinvites=False,
                        maxhistoryfetch="1", presencebroadcast=["moderator"])

        # muc#maxhistoryfetch: a newcomer gets that many history messages
        _, _, occupants, history = await bob.plugin["xep_0045"].join_muc_wait(
            room, "bob", timeout=5)
        assert [m["body"] for m in history] == ["h2"]
        assert [p["from"].resource for p in occupants] == ["alice", "bob"]
        # muc#roomconfig_presencebroadcast: a participant's presence reaches nobody else
        alice.send_message(mto=room, mbody="after bob", mtype="groupchat")
        seen = []
        while not seen or seen[-1]["body"] != "after bob":
            seen.append(await inbox_a.next())
        assert JID(f"{room}/bob") not in [s["from"] for s in seen]
        # §7.2.10 muc#roomconfig_maxusers: the room is full
        with pytest.raises(PresenceError) as full:
            await carol.plugin["xep_0045"].join_muc_wait(room, "carol", timeout=5)
        assert full.value.condition == "service-unavailable"
        # muc#roomconfig_allowpm none: no private messages
        bob.send_message(mto=JID(f"{room}/alice"), mbody="psst", mtype="chat")
        refused = await inbox_b.next(lambda s: s["type"] == "error")
        assert refused["error"]["condition"] == "forbidden"
        # muc#roomconfig_allowinvites off: only admins and owners invite
        bob.plugin["xep_0045"].invite(room, dave.boundjid.bare)
        refused = await inbox_b.next(lambda s: s["type"] == "error")
        assert refused["error"]["condition"] == "forbidden"
        # status 101: a user not in the room hears of a new affiliation
        await muc_a.set_affiliation(room, "member", jid=carol.boundjid.bare, timeout=5)
        told = await inbox_c.next(lambda s: 101 in codes(s))
        assert told["from"] == room and told["muc"]["affiliation"] == "member"
        await disconnect(alice, bob, carol, dave)

    run(scenario())
