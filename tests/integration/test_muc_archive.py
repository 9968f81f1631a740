"""A room's archive (XEP-0313 on the room JID, RSM paging, XEP-0359 stanza-ids by the room)
and XEP-0425 moderation: a retracted message is announced to the occupants and leaves a
tombstone in the archive."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from harness import ServerProcess, disconnect, run
from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .muc_support import PLUGINS, Inbox, clients, iq

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
RETRACT = "urn:xmpp:message-retract:1"
MODERATE = "urn:xmpp:message-moderate:1"


class Results:
    """The XEP-0313 result messages a client receives, by queryid."""

    def __init__(self, client: Any) -> None:
        self.found: dict[str, list[ET.Element]] = {}
        client.register_handler(Callback(
            "mam-results", MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"), self._add))

    def _add(self, msg: Any) -> None:
        result = msg.xml.find(f"{{{MAM}}}result")
        self.found.setdefault(result.get("queryid"), []).append(result)


async def query(client: Any, results: Results, room: JID, queryid: str,
                rsm: str = "") -> tuple[list[ET.Element], ET.Element]:
    answer = await iq(client, "set", room,
                      f"<query xmlns='{MAM}' queryid='{queryid}'><set xmlns='{RSM}'>{rsm}</set>"
                      "</query>")
    fin = answer.xml.find(f"{{{MAM}}}fin")
    await asyncio.sleep(0)  # results came before the IQ result, on the same stream
    return results.found.pop(queryid, []), fin


def body_of(result: ET.Element) -> str | None:
    return result.findtext(".//{jabber:client}body")


def test_room_archive_paging_and_moderation(shared_server: ServerProcess) -> None:
    room = JID(f"logged@conference.{shared_server.domain}")

    async def scenario() -> None:
        alice, bob, eve = await clients(shared_server, "a1alice", "a1bob", "a1eve",
                                        plugins=(*PLUGINS, "xep_0425"))
        inbox_a, inbox_b = Inbox(alice), Inbox(bob)
        results = Results(bob)
        await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=5)
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=5)
        assert {MAM, SID, MODERATE} <= set(info["disco_info"]["features"])
        await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=5)

        ids = []
        for n in range(5):
            alice.send_message(mto=room, mbody=f"m{n}", mtype="groupchat")
            echo = await inbox_b.next(lambda s, n=n: s["body"] == f"m{n}")
            sid = echo.xml.find(f"{{{SID}}}stanza-id")
            assert sid is not None and sid.get("by") == room  # XEP-0359 §3: by the room
            ids.append(sid.get("id"))

        # XEP-0313 §4 with XEP-0059 paging: the first two, then the next ones
        page, fin = await query(bob, results, room, "q1", "<max>2</max>")
        assert [body_of(r) for r in page] == ["m0", "m1"] and [r.get("id") for r in page] == ids[:2]
        assert fin.get("complete") == "false"
        last = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last")
        assert last == ids[1] and fin.findtext(f"{{{RSM}}}set/{{{RSM}}}count") == "5"
        page, fin = await query(bob, results, room, "q2", f"<max>10</max><after>{last}</after>")
        assert [body_of(r) for r in page] == ["m2", "m3", "m4"] and fin.get("complete") == "true"
        page, _ = await query(bob, results, room, "q3", "<max>1</max><before/>")
        assert [body_of(r) for r in page] == ["m4"]
        forwarded = page[0].find("{urn:xmpp:forward:0}forwarded/{jabber:client}message")
        assert forwarded is not None and forwarded.get("from") == f"{room}/alice"

        # XEP-0425: only moderators moderate
        with pytest.raises(IqError) as refused:
            await bob.plugin["xep_0425"].moderate(room, ids[2], "no", timeout=5)
        assert refused.value.condition == "forbidden"
        await alice.plugin["xep_0425"].moderate(room, ids[2], "spam", timeout=5)
        for inbox in (inbox_a, inbox_b):
            notice = await inbox.next(
                lambda s: s.xml.find(f"{{{RETRACT}}}retract") is not None)
            retract = notice.xml.find(f"{{{RETRACT}}}retract")
            assert notice["from"] == room and retract.get("id") == ids[2]
            moderated = retract.find(f"{{{MODERATE}}}moderated")
            assert moderated is not None and moderated.get("by") == f"{room}/alice"
            assert retract.findtext(f"{{{RETRACT}}}reason") == "spam"
        # the archive keeps a tombstone in its place, with the same id
        page, _ = await query(bob, results, room, "q4", "<max>10</max>")
        assert [r.get("id") for r in page] == ids
        tombstone = page[2].find(f".//{{{RETRACT}}}retracted")
        assert tombstone is not None and body_of(page[2]) is None
        assert tombstone.find(f"{{{MODERATE}}}moderated").get("by") == f"{room}/alice"
        with pytest.raises(IqError) as unknown:
            await alice.plugin["xep_0425"].moderate(room, "no-such-id", timeout=5)
        assert unknown.value.condition == "item-not-found"
        # a newcomer's history no longer holds the retracted message
        _, _, _, history = await eve.plugin["xep_0045"].join_muc_wait(room, "eve", timeout=5)
        assert [m["body"] for m in history] == ["m0", "m1", "m3", "m4"]

        # a members-only room's archive is for its members
        await alice.plugin["xep_0045"].set_affiliation(room, "member", jid=bob.boundjid.bare,
                                                       timeout=5)
        form = alice.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="muc#roomconfig_membersonly", ftype="boolean", value=True)
        await alice.plugin["xep_0045"].set_room_config(room, form, timeout=5)
        with pytest.raises(IqError) as outsider:
            await iq(eve, "set", room, f"<query xmlns='{MAM}'/>")
        assert outsider.value.condition == "forbidden"
        page, _ = await query(bob, results, room, "q5")
        assert len(page) == 5
        await disconnect(alice, bob, eve)

    run(scenario())
