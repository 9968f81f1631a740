"""A user puts the pubsub service in the roster like any contact (RFC 6121 §3), and the server
learns clients' features from their verified entity caps (XEP-0115 §5.4), seen from outside
through PEP +notify filtering (XEP-0163 §4.2)."""

from __future__ import annotations

from typing import Any

from harness import ServerProcess, disconnect, round_trip, run

from .im_helpers import (
    C,
    Inbox,
    client_for,
    disco_info_query,
    presence,
    raw_iq,
    result_of,
    roster_push,
)

SERVICE = "pubsub.localhost"
PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = "http://jabber.org/protocol/pubsub#event"
METADATA = "urn:xmpp:avatar:metadata"
PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163")


def test_subscribing_to_the_pubsub_service(shared_server: ServerProcess) -> None:
    gil = shared_server.add_user("gil")

    async def scenario() -> None:
        g, g_in = await client_for(shared_server, gil)
        g.send_presence(pto=SERVICE, ptype="subscribe")
        pending, _ = await g_in.push(SERVICE)  # §3.1.2: none + pending out
        assert (pending["subscription"], pending.get("ask")) == ("none", "subscribe")
        await g_in.wait(presence("subscribed", SERVICE))
        approved, _ = await g_in.push(SERVICE)  # §3.1.6: the service approved
        assert approved["subscription"] == "to" and "ask" not in approved
        await g_in.wait(presence(None, SERVICE))  # and it is available
        # The next session's initial presence probes the service (§4.2.2), which answers.
        await disconnect(g)
        g2, g2_in = await client_for(shared_server, gil + "/second")
        await g2_in.wait(presence(None, SERVICE))
        roster = await raw_iq(g2, "get", "<query xmlns='jabber:iq:roster'/>")
        items = {i.get("jid"): i.get("subscription") for i in roster.iter("{jabber:iq:roster}item")}
        assert items == {SERVICE: "to"}
        # §3.3: unsubscribing goes back to none. The service's "unsubscribed" answer changes
        # nothing any more, so it is neither delivered nor pushed (Appendix A.3.4).
        g2.send_presence(pto=SERVICE, ptype="unsubscribe")
        cancelled, _ = await g2_in.push(SERVICE)
        assert cancelled["subscription"] == "none"
        # §3.3.3: the contact's server sends unavailable presence from the contact.
        await g2_in.wait(presence("unavailable", SERVICE))
        await g2_in.absent(lambda el: roster_push(SERVICE)(el)
                           or presence("unsubscribed", SERVICE)(el))
        await disconnect(g2)

    run(scenario())


async def announce_notify(client: Any, node: str) -> None:
    """Advertise ``node+notify`` in the caps of the client's presence."""
    client.plugin["xep_0030"].add_feature(f"{node}+notify")
    await client.plugin["xep_0115"].update_caps(jid=client.boundjid, broadcast=False)
    client.send_presence()


def avatar_event(el: Any) -> bool:
    items = el.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
    return el.tag == f"{C}message" and items is not None and items.get("node") == METADATA


def test_verified_caps_decide_pep_notifications(shared_server: ServerProcess) -> None:
    hana, ian, jo = (shared_server.add_user(u) for u in ("hana", "ian", "jo"))

    async def scenario() -> None:
        h, h_in = await client_for(shared_server, hana, plugins=PLUGINS)
        i, i_in = await client_for(shared_server, ian, plugins=PLUGINS)
        j, j_in = await client_for(shared_server, jo, plugins=PLUGINS)
        for contact, contact_in in ((i, i_in), (j, j_in)):
            contact.send_presence(pto=hana, ptype="subscribe")
            await h_in.wait(presence("subscribe", contact.boundjid.bare))
            h.send_presence(pto=contact.boundjid.bare, ptype="subscribed")
            await contact_in.wait(presence("subscribed", hana))
        # The server asks ian's client for its disco#info once, for this ver, and checks the hash.
        i_out = Inbox(i, "out")
        await announce_notify(i, METADATA)
        query = await i_in.wait(disco_info_query)
        assert query.get("from") == ian  # the account asks, as its PEP service (XEP-0163)
        await i_out.wait(result_of(query))  # the client answered...
        await round_trip(i)  # ... and the server has hashed and remembered the answer
        publish = (f"<pubsub xmlns='{PUBSUB}'><publish node='{METADATA}'><item id='abc'>"
                   f"<metadata xmlns='{METADATA}'><info id='abc' bytes='10' type='image/png'/>"
                   "</metadata></item></publish></pubsub>")
        await raw_iq(h, "set", publish)
        event = await i_in.wait(avatar_event)
        assert event.get("from") == hana
        await j_in.absent(avatar_event)  # jo never asked for avatar metadata
        await disconnect(h, i, j)

    run(scenario())
