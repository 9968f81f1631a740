"""XEP-0313 message archives with XEP-0359 stanza ids, queried by slixmpp clients (its xep_0313
plugin and hand-written queries for exact RSM checks): both parties' archives, filters, paging
both ways to completion, preferences, storage hints, durability, access control."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import RawClient, ServerProcess, connect, disconnect, round_trip, run
from slixmpp import JID
from slixmpp.exceptions import IqError

from .im_helpers import Inbox

C = "{jabber:client}"
MAM = "urn:xmpp:mam:2"
RSM = "{http://jabber.org/protocol/rsm}"
SID = "{urn:xmpp:sid:0}stanza-id"
FWD = "{urn:xmpp:forward:0}forwarded"
PLUGINS = ("xep_0030", "xep_0059", "xep_0297", "xep_0313", "xep_0280")


@dataclass
class Result:
    id: str
    stamp: str
    message: ET.Element

    @property
    def body(self) -> str:
        return self.message.findtext(f"{C}body") or ""


@dataclass
class Fin:
    complete: str | None
    first: str | None
    first_index: str | None
    last: str | None
    count: str | None


class Archive:
    """A client plus its inbox, to run hand-written queries and collect their results."""

    def __init__(self, client: Any, jid: str) -> None:
        self.client = client
        self.jid = jid
        self.inbox = Inbox(client)
        self._n = 0

    async def query(self, fields: dict[str, str | list[str]] | None = None,
                    rsm: str = "", extra: str = "", to: str | None = None
                    ) -> tuple[list[Result], Fin]:
        self._n += 1
        qid = f"q{self._n}"
        form = ""
        if fields:
            form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                    f"<value>{MAM}</value></field>")
            for var, value in fields.items():
                values = value if isinstance(value, list) else [value]
                form += f"<field var='{var}'>" + "".join(
                    f"<value>{v}</value>" for v in values) + "</field>"
            form += "</x>"
        if rsm:
            rsm = f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>"
        iq = self.client.make_iq_set()
        if to is not None:
            iq["to"] = to
        iq.append(ET.fromstring(f"<query xmlns='{MAM}' queryid='{qid}'>{form}{rsm}{extra}</query>"))
        reply = await iq.send(timeout=5)
        results = []
        for el in list(self.inbox.items):
            result = el.find(f"{{{MAM}}}result")
            if result is None or result.get("queryid") != qid:
                continue
            self.inbox.items.remove(el)
            assert el.get("from") == JID(self.jid).bare  # §8.2: from the archive's JID
            forwarded = result.find(FWD)
            assert forwarded is not None
            delay = forwarded.find("{urn:xmpp:delay}delay")
            message = forwarded.find(f"{C}message")
            assert delay is not None and message is not None
            results.append(Result(result.get("id", ""), delay.get("stamp", ""), message))
        fin = reply.xml.find(f"{{{MAM}}}fin")
        assert fin is not None
        set_ = fin.find(f"{RSM}set")
        first = set_.find(f"{RSM}first")
        return results, Fin(fin.get("complete"), set_.findtext(f"{RSM}first"),
                            first.get("index") if first is not None else None,
                            set_.findtext(f"{RSM}last"), set_.findtext(f"{RSM}count"))


async def online(server: ServerProcess, jid: str) -> Archive:
    client = await connect(server, jid, plugins=PLUGINS)
    return Archive(client, jid)


def has_body(text: str) -> Any:
    return lambda el: el.tag == f"{C}message" and el.findtext(f"{C}body") == text


def stanza_ids(el: ET.Element) -> dict[str, str]:
    return {sid.get("by", ""): sid.get("id", "") for sid in el.findall(SID)}


async def settle(*archives: Archive) -> None:
    """A round trip for each client: everything each one sent has been routed (and archived:
    a query commits what is queued), and everything sent to each one has arrived."""
    for archive in archives:
        await round_trip(archive.client)


async def close(*archives: Archive) -> None:
    """One at a time: clients closing together wait for each other's presence."""
    for archive in archives:
        await disconnect(archive.client)


def test_both_archives_stanza_ids_hints_and_restart(server: ServerProcess) -> None:
    alice, bob = server.add_user("alice"), server.add_user("bob")
    kept: dict[str, list[tuple[str, str]]] = {}

    async def chat() -> None:
        a, b = await online(server, alice), await online(server, bob)
        for text in ("hello bob", "how are you?"):
            a.client.send_message(mto=bob, mbody=text, mtype="chat")
        got = await b.inbox.wait(has_body("how are you?"))
        first = await b.inbox.wait(has_body("hello bob"))
        b.client.send_message(mto=alice, mbody="fine, thanks", mtype="chat")
        reply = await a.inbox.wait(has_body("fine, thanks"))
        # A stanza-id a client forges for the recipient's archive is replaced by the real one.
        a.client.send_raw(f"<message to='{bob}' type='normal'><body>normal one</body>"
                          f"<stanza-id xmlns='urn:xmpp:sid:0' by='{bob}' id='forged'/></message>")
        normal = await b.inbox.wait(has_body("normal one"))
        # Not archived: a no-store hint, a no-permanent-store hint, no body, an error.
        for hint in ("no-store", "no-permanent-store"):
            msg = a.client.make_message(mto=bob, mbody=f"secret {hint}", mtype="chat")
            msg.append(ET.fromstring(f"<{hint} xmlns='urn:xmpp:hints'/>"))
            msg.send()
        a.client.send_raw(f"<message to='{bob}' type='chat'><active "
                          "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await b.inbox.wait(has_body("secret no-permanent-store"))
        await settle(a, b)

        # XEP-0313 §3.5: the recipient learns the id in its archive, and nothing else.
        ids = stanza_ids(first)
        assert set(ids) == {bob}, ET.tostring(first)
        assert set(stanza_ids(got)) == {bob} and set(stanza_ids(reply)) == {alice}
        assert set(stanza_ids(normal)) == {bob} and stanza_ids(normal)[bob] != "forged"

        for owner, peer in ((a, bob), (b, alice)):
            results, fin = await owner.query()
            assert [r.body for r in results] == [
                "hello bob", "how are you?", "fine, thanks", "normal one"]
            assert fin.complete == "true" and fin.count == "4" and fin.first_index == "0"
            assert (fin.first, fin.last) == (results[0].id, results[-1].id)
            assert all(JID(r.message.get("from")).bare in (alice, bob) for r in results)
            kept[owner.jid] = [(r.id, r.body) for r in results]
            # slixmpp's own client API sees the same archive.
            iq = await owner.client.plugin["xep_0313"].retrieve(
                jid=JID(owner.jid), with_jid=JID(peer), timeout=5)
            assert [m["mam_result"]["id"] for m in iq["mam"]["results"]] == [
                r.id for r in results]
        bob_ids = {body: uid for uid, body in kept[bob]}
        alice_ids = {body: uid for uid, body in kept[alice]}
        assert ids[bob] == bob_ids["hello bob"]
        assert stanza_ids(got)[bob] == bob_ids["how are you?"]
        assert stanza_ids(normal)[bob] == bob_ids["normal one"]
        assert stanza_ids(reply)[alice] == alice_ids["fine, thanks"]
        await close(a, b)

    async def after_restart() -> None:
        a = await online(server, alice)
        results, fin = await a.query()
        assert [(r.id, r.body) for r in results] == kept[alice]
        await close(a)

    run(chat())
    server.restart(hard=True)
    run(after_restart())


def test_paging_forward_and_backward_to_completion(shared_server: ServerProcess) -> None:
    server = shared_server
    carol, dave = server.add_user("carol"), server.add_user("dave")

    async def scenario() -> None:
        c, d = await online(server, carol), await online(server, dave)
        texts = [f"m{i}" for i in range(7)]
        for text in texts:
            c.client.send_message(mto=dave, mbody=text, mtype="chat")
        await d.inbox.wait(has_body("m6"))
        await settle(c, d)

        # Forward with <after/>, three at a time.
        seen: list[str] = []
        after = ""
        while True:
            results, fin = await c.query(rsm=f"<max>3</max>{after}")
            assert fin.count == "7" and fin.first_index == str(len(seen))
            seen += [r.body for r in results]
            if fin.complete == "true":
                break
            assert fin.complete == "false" and len(results) == 3
            after = f"<after>{fin.last}</after>"
        assert seen == texts

        # Backward: <before/> for the last page, then <before>first</before>.
        pages: list[list[str]] = []
        before = "<before/>"
        while True:
            results, fin = await c.query(rsm=f"<max>3</max>{before}")
            pages.append([r.body for r in results])
            if fin.complete == "true":
                break
            before = f"<before>{fin.first}</before>"
        assert pages == [["m4", "m5", "m6"], ["m1", "m2", "m3"], ["m0"]]

        # max 0 only counts (XEP-0059 §2.6); slixmpp pages through in both directions.
        results, fin = await c.query(rsm="<max>0</max>")
        assert results == [] and fin.count == "7" and fin.complete == "false"
        mam = c.client.plugin["xep_0313"]
        forward = [m["mam_result"]["forwarded"]["stanza"]["body"]
                   async for m in mam.iterate(jid=JID(carol), rsm={"max": 2})]
        backward = [m["mam_result"]["forwarded"]["stanza"]["body"]
                    async for m in mam.iterate(jid=JID(carol), rsm={"max": 2}, reverse=True)]
        assert forward == texts and backward == texts[::-1]

        # An id that is not in the archive is item-not-found (§4.3.2).
        with pytest.raises(IqError) as err:
            await c.query(rsm="<after>no-such-id</after>")
        assert err.value.iq["error"]["condition"] == "item-not-found"
        await close(c, d)

    run(scenario())


def test_filters_with_start_end_and_extended_fields(shared_server: ServerProcess) -> None:
    server = shared_server
    erin, frank, gina = (server.add_user(n) for n in ("erin", "frank", "gina"))

    async def scenario() -> None:
        e, f, g = [await online(server, j) for j in (erin, frank, gina)]
        for i, (peer, inbox) in enumerate([(frank, f.inbox), (gina, g.inbox), (frank, f.inbox),
                                           (gina, g.inbox)]):
            e.client.send_message(mto=peer, mbody=f"e{i}", mtype="chat")
            await inbox.wait(has_body(f"e{i}"))  # a round trip: distinct µs timestamps
        g.client.send_message(mto=f"{erin}/elsewhere", mbody="to a resource", mtype="chat")
        await e.inbox.wait(has_body("to a resource"))
        await settle(e, f, g)
        every, _ = await e.query()
        assert [r.body for r in every] == ["e0", "e1", "e2", "e3", "to a resource"]

        # 'with' a bare JID matches any resource; a full JID only that resource (§4.1.1).
        results, fin = await e.query({"with": frank})
        assert [r.body for r in results] == ["e0", "e2"] and fin.count == "2"
        results, _ = await e.query({"with": gina})
        assert [r.body for r in results] == ["e1", "e3", "to a resource"]
        results, _ = await e.query({"with": f"{gina}/nowhere"})
        assert results == []
        gina_full = every[4].message.get("from")
        results, _ = await e.query({"with": gina_full})
        assert [r.body for r in results] == ["to a resource"]

        # start and end are inclusive (§4.1.2).
        stamps = [r.stamp for r in every]
        results, _ = await e.query({"start": stamps[1]})
        assert [r.body for r in results] == ["e1", "e2", "e3", "to a resource"]
        results, _ = await e.query({"end": stamps[1]})
        assert [r.body for r in results] == ["e0", "e1"]
        results, _ = await e.query({"start": stamps[1], "end": stamps[2], "with": frank})
        assert [r.body for r in results] == ["e2"]
        results, fin = await e.query({"start": "2000-01-01T00:00:00Z",
                                      "end": "2000-01-02T00:00:00+02:00"})
        assert results == [] and fin.complete == "true" and fin.count == "0"

        # urn:xmpp:mam:2#extended: after-id/before-id, ids, flip-page (§4.1.3, §4.3.4).
        ids = [r.id for r in every]
        results, _ = await e.query({"after-id": ids[0], "before-id": ids[3]})
        assert [r.body for r in results] == ["e1", "e2"]
        results, _ = await e.query({"ids": [ids[3], ids[1]]})
        assert [r.body for r in results] == ["e1", "e3"]
        results, fin = await e.query(rsm="<max>2</max><before/>", extra="<flip-page/>")
        assert [r.body for r in results] == ["to a resource", "e3"]
        assert (fin.first, fin.last) == (ids[3], ids[4])
        for fields in ({"ids": ["nope"]}, {"after-id": "nope"}):
            with pytest.raises(IqError) as err:
                await e.query(fields)
            assert err.value.iq["error"]["condition"] == "item-not-found"
        with pytest.raises(IqError) as err:
            await e.query({"{urn:example}free-text": "x"})
        assert err.value.iq["error"]["condition"] == "feature-not-implemented"
        with pytest.raises(IqError) as err:
            await e.query({"start": "yesterday"})
        assert err.value.iq["error"]["condition"] == "bad-request"

        # §5: archive metadata; §4.1.5: the query form; §8.1: others' archives are closed.
        meta = await e.client.plugin["xep_0313"].get_archive_metadata(timeout=5)
        assert meta["mam_metadata"]["start"]["id"] == ids[0]
        assert meta["mam_metadata"]["end"]["id"] == ids[4]
        form = await e.client.plugin["xep_0313"].get_fields(timeout=5)
        fields = {fld.get("var") for fld in form.xml.iter("{jabber:x:data}field")}
        assert {"with", "start", "end", "before-id", "after-id", "ids"} <= fields
        with pytest.raises(IqError) as err:
            await f.query(to=erin)
        assert err.value.iq["error"]["condition"] == "forbidden"
        info = await e.client.plugin["xep_0030"].get_info(jid=erin, timeout=5)
        assert {MAM, f"{MAM}#extended"} <= set(info["disco_info"]["features"])
        host = await e.client.plugin["xep_0030"].get_info(jid=server.domain, timeout=5)
        assert MAM not in host["disco_info"]["features"]  # the server has no archive
        await close(e, f, g)

    run(scenario())


def test_an_end_written_to_the_second_takes_in_that_whole_second(
        shared_server: ServerProcess) -> None:
    """XEP-0313 §4.1.2 with XEP-0082 §3.2: 'end' takes in messages whose timestamp is equal to
    it or earlier, to the accuracy it is written in. A client that asks for its conversation
    "up to now" to the second (Poezio, when a message opens a tab) gets the message it was
    just given, though the archive keeps microseconds; an 'end' to the microsecond is exact."""
    server = shared_server
    hal, ivy = server.add_user("hal"), server.add_user("ivy")

    async def scenario() -> None:
        h, i = await online(server, hal), await online(server, ivy)
        h.client.send_message(mto=ivy, mbody="just now", mtype="chat")
        await i.inbox.wait(has_body("just now"))
        [kept], _ = await i.query({"with": hal})
        stamp = datetime.datetime.fromisoformat(kept.stamp)
        second = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        for end in (second, stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    stamp.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
                    .strftime("%Y-%m-%dT%H:%M:%S+02:00")):
            results, fin = await i.query({"with": hal, "end": end})
            assert [r.body for r in results] == ["just now"] and fin.count == "1", end
        just_before = stamp - datetime.timedelta(microseconds=1)
        results, _ = await i.query({"end": just_before.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        assert results == []
        results, _ = await i.query({"start": second, "end": second})
        assert [r.body for r in results] == ["just now"]
        await close(h, i)

    run(scenario())


def test_preferences_decide_what_is_archived(shared_server: ServerProcess) -> None:
    server = shared_server
    hana, ivan, judy = (server.add_user(n) for n in ("hana", "ivan", "judy"))

    async def prefs_iq(client: Any, xml: str | None) -> ET.Element:
        iq = client.make_iq_set() if xml else client.make_iq_get()
        iq.append(ET.fromstring(xml or f"<prefs xmlns='{MAM}'/>"))
        reply = await iq.send(timeout=5)
        return reply.xml.find(f"{{{MAM}}}prefs")

    def jids(prefs: ET.Element, name: str) -> list[str]:
        return [j.text or "" for j in prefs.findall(f"{{{MAM}}}{name}/{{{MAM}}}jid")]

    async def scenario() -> None:
        h, i, j = [await online(server, x) for x in (hana, ivan, judy)]
        current = await prefs_iq(h.client, None)
        assert current.get("default") == "always"  # the configured default
        new = await prefs_iq(h.client, f"<prefs xmlns='{MAM}' default='never'><always>"
                             f"<jid>{ivan}</jid></always><never/></prefs>")
        assert new.get("default") == "never" and jids(new, "always") == [ivan]
        again = await prefs_iq(h.client, None)
        assert again.get("default") == "never" and jids(again, "always") == [ivan]

        h.client.send_message(mto=ivan, mbody="kept: ivan is always", mtype="chat")
        h.client.send_message(mto=judy, mbody="dropped: default never", mtype="chat")
        i.client.send_message(mto=hana, mbody="kept: from ivan", mtype="chat")
        j.client.send_message(mto=hana, mbody="dropped: from judy", mtype="chat")
        await h.inbox.wait(has_body("dropped: from judy"))
        await h.inbox.wait(has_body("kept: from ivan"))
        await j.inbox.wait(has_body("dropped: default never"))
        await settle(h, i, j)
        results, _ = await h.query()
        assert sorted(r.body for r in results) == ["kept: from ivan", "kept: ivan is always"]
        # Judy's own archive follows her (default) preferences.
        results, _ = await j.query()
        assert sorted(r.body for r in results) == ["dropped: default never", "dropped: from judy"]

        # "roster": only contacts in the roster; "never" list beats everything.
        await prefs_iq(h.client, f"<prefs xmlns='{MAM}' default='roster'><never>"
                       f"<jid>{ivan}</jid></never></prefs>")
        h.client.send_message(mto=judy, mbody="not a contact", mtype="chat")
        h.client.send_message(mto=ivan, mbody="never ivan", mtype="chat")
        await j.inbox.wait(has_body("not a contact"))
        await i.inbox.wait(has_body("never ivan"))
        await settle(h, i, j)
        results, _ = await h.query()
        assert len(results) == 2
        with pytest.raises(IqError) as err:
            await prefs_iq(h.client, f"<prefs xmlns='{MAM}' default='sometimes'/>")
        assert err.value.iq["error"]["condition"] == "bad-request"
        await close(h, i, j)

    run(scenario())


def test_carbon_copies_carry_the_owners_stanza_id(shared_server: ServerProcess) -> None:
    """XEP-0313 §3.5: carbons carry the id in the owner's archive; the contact never sees it."""
    server = shared_server
    kate, leo = server.add_user("kate"), server.add_user("leo")

    async def scenario() -> None:
        phone = await online(server, kate + "/phone")
        desk = await online(server, kate + "/desk")
        other = await online(server, leo)
        await desk.client.plugin["xep_0280"].enable(timeout=5)
        phone.client.send_message(mto=leo, mbody="sent from the phone", mtype="chat")
        delivered = await other.inbox.wait(has_body("sent from the phone"))
        other.client.send_message(mto=kate + "/phone", mbody="to the phone", mtype="chat")
        await phone.inbox.wait(has_body("to the phone"))
        await settle(desk, phone, other)
        copies = [el for el in desk.inbox.items if el.find(
            "{urn:xmpp:carbons:2}sent") is not None or el.find(
            "{urn:xmpp:carbons:2}received") is not None]
        assert len(copies) == 2
        archive = {r.body: r.id for r in (await desk.query())[0]}
        for copy in copies:
            inner = copy.find(f".//{FWD}/{C}message")
            assert inner is not None
            assert stanza_ids(inner) == {kate: archive[inner.findtext(f"{C}body")]}
        assert kate not in stanza_ids(delivered)
        await close(phone, desk, other)

    run(scenario())


def test_raw_result_shape(shared_server: ServerProcess) -> None:
    """The exact wire form of a result (§4.2) and of <fin/> (§4.3), without any library."""
    server = shared_server
    mona, ned = server.add_user("mona"), server.add_user("ned")
    raw = RawClient(server)
    full = raw.login("mona")
    raw.send(f"<message to='{ned}' type='chat' id='m1'><body>raw &amp; ready</body></message>")
    raw.send(f"<iq type='set' id='q'><query xmlns='{MAM}' queryid='&lt;qid&gt;'/></iq>")
    text = raw.read_until(b"</fin>")
    start = text.index("<message")
    result = ET.fromstring(text[start:text.index("</message></forwarded></result></message>")
                           + len("</message></forwarded></result></message>")])
    assert result.get("to") == full and result.get("from") == mona
    res = result.find(f"{{{MAM}}}result")
    assert res is not None and res.get("queryid") == "<qid>"
    inner = res.find(f"{FWD}/{C}message")
    assert inner is not None and inner.findtext(f"{C}body") == "raw & ready"
    assert inner.get("id") == "m1" and inner.get("to") == ned
    assert res.find(f"{FWD}/{{urn:xmpp:delay}}delay").get("stamp", "").endswith("Z")
    assert "complete='true'" in text or 'complete="true"' in text
    raw.close()


def test_retention_keeps_the_newest_messages(tmp_path: Path) -> None:
    """XEP-0313 §3.2: over the per-user limit the oldest go, and ids are never reused."""
    server = ServerProcess(tmp_path, extra={"mam": {"max_messages_per_user": 3,
                                                   "max_page_size": 2}})
    server.start()
    try:
        olga, paul = server.add_user("olga"), server.add_user("paul")

        async def scenario() -> None:
            o, p = await online(server, olga), await online(server, paul)
            for i in range(5):
                o.client.send_message(mto=paul, mbody=f"r{i}", mtype="chat")
            await p.inbox.wait(has_body("r4"))
            await settle(o, p)
            # The server's page limit applies whatever the client asks for.
            results, fin = await o.query(rsm="<max>50</max>")
            assert [r.body for r in results] == ["r2", "r3"] and fin.complete == "false"
            assert fin.count == "3"
            results, fin = await o.query(rsm=f"<after>{fin.last}</after>")
            assert [r.body for r in results] == ["r4"] and fin.complete == "true"
            await close(o, p)

        run(scenario())
    finally:
        server.kill()


def test_a_message_kept_offline_carries_its_archive_id(shared_server: ServerProcess) -> None:
    """The copy offline storage keeps is the archived one, stanza-id included (XEP-0313 §3.5):
    the id travels in the serialized message, not in the routed element."""
    server = shared_server
    nia, oto = server.add_user("nia"), server.add_user("oto")

    async def scenario() -> None:
        n = await online(server, nia)
        n.client.send_message(mto=oto, mbody="while you were away", mtype="chat")
        await settle(n)
        o = Archive(await connect(server, oto, plugins=PLUGINS, presence=False), oto)
        o.client.send_presence()  # XEP-0160 §3: offline messages follow initial presence
        kept = await o.inbox.wait(has_body("while you were away"))
        assert kept.find("{urn:xmpp:delay}delay") is not None  # it came from offline storage
        results, _ = await o.query()
        assert [r.body for r in results] == ["while you were away"]
        assert stanza_ids(kept) == {oto: results[0].id}
        await close(n, o)

    run(scenario())
