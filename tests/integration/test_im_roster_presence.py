"""RFC 6121 rosters, subscriptions and presence with real slixmpp clients over real sockets."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from harness import RawClient, ServerProcess, connect, disconnect, round_trip, run

from . import im_helpers

C = "{jabber:client}"
R = "{jabber:iq:roster}"


class Inbox(im_helpers.Inbox):
    async def push(self, contact: str) -> dict[str, str]:  # type: ignore[override]
        """The next roster push about ``contact``: its item's attributes."""
        item, _ver = await super().push(contact)
        return item


def presence(type_: str | None = None, from_: str | None = None) -> Callable[[ET.Element], bool]:
    def match(el: ET.Element) -> bool:
        return (el.tag == f"{C}presence" and el.get("type") == type_
                and (from_ is None or el.get("from") == from_))
    return match


async def client_for(server: ServerProcess, jid: str, **kw: Any) -> tuple[Any, Inbox]:
    client = await connect(server, jid, presence=False, **kw)
    client.auto_authorize = None  # let the test answer requests itself
    client.auto_subscribe = False
    inbox = Inbox(client)
    await client.get_roster()
    client.send_presence()
    return client, inbox


def test_two_users_subscribe_step_by_step(server: ServerProcess) -> None:
    alice, bob = server.add_user("alice"), server.add_user("bob")

    async def scenario() -> None:
        a, ain = await client_for(server, alice)
        b, bin_ = await client_for(server, bob)
        # 1. Alice asks: her roster shows the pending request; Bob gets it from her bare JID.
        a.send_presence(pto=bob, ptype="subscribe")
        assert (await ain.push(bob)) == {"jid": bob, "subscription": "none", "ask": "subscribe"}
        await bin_.wait(presence("subscribe", alice))
        # 2. Bob approves: from for him, to for her, and she sees his presence at once.
        b.send_presence(pto=alice, ptype="subscribed")
        assert (await bin_.push(alice))["subscription"] == "from"
        await ain.wait(presence("subscribed", bob))
        assert (await ain.push(bob)) == {"jid": bob, "subscription": "to"}
        await ain.wait(presence(None, str(b.boundjid)))
        # 3. Bob asks back and Alice approves: both.
        b.send_presence(pto=alice, ptype="subscribe")
        assert (await bin_.push(alice)) == {"jid": alice, "subscription": "from",
                                            "ask": "subscribe"}
        await ain.wait(presence("subscribe", bob))
        a.send_presence(pto=bob, ptype="subscribed")
        assert (await ain.push(bob))["subscription"] == "both"
        assert (await bin_.push(alice))["subscription"] == "both"
        await bin_.wait(presence(None, str(a.boundjid)))
        # 4. A second "subscribe" changes nothing and is answered by the server (A.3.1 [2]).
        b.send_presence(pto=alice, ptype="subscribe")
        await bin_.wait(presence("subscribed", alice))
        await ain.absent(presence("subscribe", bob))
        # 5. Alice unsubscribes: from for her, to for him; she sees him go offline.
        a.send_presence(pto=bob, ptype="unsubscribe")
        assert (await ain.push(bob))["subscription"] == "from"
        assert (await bin_.push(alice))["subscription"] == "to"
        await ain.wait(presence("unavailable", str(b.boundjid)))
        # 6. Bob cancels her... he is subscribed to her still; he removes her: she gets pushes.
        iq = b.make_iq_set()
        iq.append(ET.fromstring(f"<query xmlns='jabber:iq:roster'><item jid='{alice}' "
                                "subscription='remove'/></query>"))
        await iq.send()
        assert (await bin_.push(alice))["subscription"] == "remove"
        assert (await ain.push(bob)) == {"jid": bob, "subscription": "none"}
        await disconnect(a, b)

    run(scenario())


def test_pending_request_redelivered_and_pre_approval(server: ServerProcess) -> None:
    carol, dave = server.add_user("carol"), server.add_user("dave")

    async def scenario() -> None:
        c, cin = await client_for(server, carol)
        c.send_presence(pto=dave, ptype="subscribe")  # Dave is offline
        await cin.push(dave)
        d, din = await client_for(server, dave)
        await din.wait(presence("subscribe", carol))  # §3.1.3: delivered at initial presence
        # Dave pre-approves Carol's future request, then answers hers; he asks back and is
        # accepted at once thanks to Carol's own pre-approval (§3.4).
        c.send_presence(pto=dave, ptype="subscribed")
        item = await cin.push(dave)
        assert item.get("approved") == "true" and item["subscription"] == "none"
        await din.absent(presence("subscribed", carol))  # not routed (A.2.3)
        d.send_presence(pto=carol, ptype="subscribed")
        assert (await cin.push(dave))["subscription"] == "to"
        assert (await din.push(carol)) == {"jid": carol, "subscription": "from"}
        d.send_presence(pto=carol, ptype="subscribe")
        await din.wait(presence("subscribed", carol))
        assert (await din.push(carol))["ask"] == "subscribe"
        assert (await din.push(carol)) == {"jid": carol, "subscription": "both"}
        assert (await cin.push(dave)) == {"jid": dave, "subscription": "both"}
        await cin.absent(presence("subscribe", dave))
        await disconnect(c, d)

    run(scenario())


def test_probes_directed_presence_and_abrupt_disconnect(server: ServerProcess) -> None:
    erin, frank, gina = (server.add_user(u) for u in ("erin", "frank", "gina"))

    async def scenario() -> None:
        e, ein = await client_for(server, erin)
        f, fin = await client_for(server, frank)
        e.send_presence(pto=frank, ptype="subscribed")  # pre-approve
        await round_trip(e)  # the pre-approval is stored before Frank asks
        f.send_presence(pto=erin, ptype="subscribe")
        await fin.wait(presence("subscribed", erin))
        e.send_presence(pshow="away", pstatus="reading feeds")
        el = await fin.wait(lambda x: presence(None, str(e.boundjid))(x)
                            and x.findtext(f"{C}show") == "away")
        # Frank logs in again: his initial presence probes Erin, who answers with her last one.
        await disconnect(f)
        f2, fin2 = await client_for(server, frank + "/second")
        el = await fin2.wait(presence(None, str(e.boundjid)))
        assert el.findtext(f"{C}status") == "reading feeds"
        # Directed presence from Gina (no subscription) is undone when she disappears.
        g, gin = await client_for(server, gina)
        g.send_presence(pto=str(e.boundjid), pstatus="hi")
        await ein.wait(presence(None, str(g.boundjid)))
        g.transport.abort()  # no unavailable presence, no </stream>: an abrupt end
        await ein.wait(presence("unavailable", str(g.boundjid)))
        # Erin goes offline cleanly: her subscriber Frank sees it.
        e.send_presence(ptype="unavailable")
        await fin2.wait(presence("unavailable", str(e.boundjid)))
        await disconnect(e, f2)

    run(scenario())


def test_roster_versioning_and_errors(server: ServerProcess) -> None:
    hank = server.add_user("hank")

    async def scenario() -> None:
        from slixmpp.exceptions import IqError

        h, hin = await client_for(server, hank)

        async def roster_iq(type_: str, query: str) -> Any:
            iq = h.make_iq_set() if type_ == "set" else h.make_iq_get()
            iq.append(ET.fromstring(query))
            return await iq.send()

        async def error_of(query: str) -> str:
            try:
                await roster_iq("set", query)
            except IqError as exc:
                return str(exc.iq["error"]["condition"])
            raise AssertionError("no error")

        q = "<query xmlns='jabber:iq:roster'>{}</query>"
        await roster_iq("set", q.format("<item jid='pubsub.localhost' name='Feeds'>"
                                        "<group>Services</group></item>"))
        item = await hin.push("pubsub.localhost")
        assert item["name"] == "Feeds"
        result = await roster_iq("get", "<query xmlns='jabber:iq:roster' ver=''/>")
        ver = result.xml.find(f"{R}query").get("ver")
        assert ver and result.xml.find(f"{R}query/{R}item/{R}group").text == "Services"
        same = await roster_iq("get", f"<query xmlns='jabber:iq:roster' ver='{ver}'/>")
        assert same.xml.find(f"{R}query") is None  # §2.6.3: unchanged, empty result
        two_items = q.format("<item jid='a@localhost'/><item jid='b@localhost'/>")
        assert await error_of(two_items) == "bad-request"
        assert await error_of(q.format("<item jid='a@localhost'><group>x</group><group>x</group>"
                                       "</item>")) == "bad-request"
        empty_group = q.format("<item jid='a@localhost'><group/></item>")
        assert await error_of(empty_group) == "not-acceptable"
        assert await error_of(q.format("<item jid='nobody@localhost' subscription='remove'/>")) \
            == "item-not-found"
        other = h.make_iq_get(ito="someone@localhost")
        other.append(ET.fromstring("<query xmlns='jabber:iq:roster'/>"))
        try:
            await other.send()
            raise AssertionError("no error")
        except IqError as exc:
            assert exc.iq["error"]["condition"] in ("forbidden", "service-unavailable")
        await disconnect(h)

    run(scenario())


def test_roster_size_limit_and_features(tmp_path: Any) -> None:
    srv = ServerProcess(tmp_path, extra={"limits": {"roster_max_items": 1}})
    srv.start()
    try:
        ivy = srv.add_user("ivy")

        async def scenario() -> None:
            from slixmpp.exceptions import IqError

            i, _ = await client_for(srv, ivy)
            info = await i.plugin["xep_0030"].get_info(jid=srv.domain)
            features = set(info["disco_info"]["features"])
            assert {"urn:xmpp:blocking", "urn:xmpp:carbons:2", "vcard-temp", "jabber:iq:last",
                    "msgoffline", "http://jabber.org/protocol/caps"} <= features
            i.send_presence(pto="x@localhost", ptype="subscribe")
            await round_trip(i)  # the subscription request has filled the roster
            iq = i.make_iq_set()
            iq.append(ET.fromstring(
                "<query xmlns='jabber:iq:roster'><item jid='y@localhost'/></query>"))
            try:
                await iq.send()
                raise AssertionError("no error")
            except IqError as exc:
                assert exc.iq["error"]["condition"] == "not-allowed"
            await disconnect(i)

        run(scenario())
        raw = RawClient(srv)
        raw.open()
        raw.starttls()
        raw.open()
        token = base64.b64encode(b"\0ivy\0password1").decode()
        raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        raw.read_until(b"<success")
        features = raw.open()
        assert "urn:xmpp:features:rosterver" in features  # §2.6.1
        assert "urn:xmpp:features:pre-approval" in features  # §3.4
        assert "http://jabber.org/protocol/caps" in features and "ver=''" not in features
        raw.close()
    finally:
        srv.kill()
