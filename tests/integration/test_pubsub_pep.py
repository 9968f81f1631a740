"""PEP (XEP-0163) between two contacts: +notify filtering from entity caps, last item on
coming online, and the account's disco identity."""

from __future__ import annotations

from typing import Any

from harness import ServerProcess, connect, disconnect, run

from .im_helpers import Inbox, caps_announced, presence
from .pubsub_helpers import EVENT, PUBSUB, iq_error, item_ids, message_queue, next_event, raw_iq

NICK = "http://jabber.org/protocol/nick"
PLUGINS = ("xep_0030", "xep_0060", "xep_0004", "xep_0115", "xep_0163")


def nick_xml(item_id: str, nick: str) -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{NICK}'><item id='{item_id}'>"
            f"<nick xmlns='{NICK}'>{nick}</nick></item></publish></pubsub>")


async def interested(client: Any) -> None:
    """Advertise ``nick+notify`` in the client's caps (XEP-0163 §4.2)."""
    client.plugin["xep_0030"].add_feature(f"{NICK}+notify")
    await client.plugin["xep_0115"].update_caps(jid=client.boundjid, broadcast=False)
    await caps_announced(client)  # the server asks the client's disco#info once


async def befriend(a: Any, b: Any) -> None:
    """Presence subscriptions both ways (slixmpp approves requests by default); what PEP needs
    is that ``b`` receives ``a``'s presence ("from" or "both" in a's roster)."""
    a_bare = str(a.boundjid.bare)
    b_in = Inbox(b)
    a.send_presence_subscription(pto=b.boundjid.bare)
    b.send_presence_subscription(pto=a_bare)
    # a's client approves b's request; the server updates a's roster, then tells b (RFC 6121
    # §3.1.5), and sends b a's presence.
    await b_in.wait(presence("subscribed", a_bare))
    b_in.close()


def test_pep_notify_and_last_item(server: ServerProcess) -> None:
    alice, bob, carol = (server.add_user(n) for n in ("alice", "bob", "carol"))

    async def scenario() -> None:
        pa = await connect(server, alice, plugins=PLUGINS)
        pb = await connect(server, bob, plugins=PLUGINS)
        pc = await connect(server, carol, plugins=PLUGINS)
        await befriend(pa, pb)
        await interested(pb)
        events = message_queue(pb)
        # XEP-0163 §3: the account is a PEP service
        info = await pb.plugin["xep_0030"].get_info(jid=alice)
        assert ("pubsub", "pep") in {i[:2] for i in info["disco_info"]["identities"]}
        assert f"{PUBSUB}#publish" in info["disco_info"]["features"]
        # §4.3: publishing to one's own bare JID auto-creates the node; the contact is notified
        await raw_iq(pa, None, "set", nick_xml("current", "Alice"))
        event = await next_event(events)
        assert event.get("from") == alice and item_ids(event) == ["current"]
        assert event.find(f".//{{{NICK}}}nick").text == "Alice"
        # a non-contact may not read a presence-access node (§4.5)
        assert (await iq_error(pc, alice, "get", f"<pubsub xmlns='{PUBSUB}'><items "
                               f"node='{NICK}'/></pubsub>"))[1] == "not-authorized"
        # the contact reads it by IQ to the owner's bare JID
        items = await raw_iq(pb, alice, "get", f"<pubsub xmlns='{PUBSUB}'><items node='{NICK}'/>"
                             "</pubsub>")
        assert items.find(f".//{{{NICK}}}nick").text == "Alice"
        # §4.3.4: coming online, the contact gets the last item it missed
        await disconnect(pb)  # returns once the server has ended the session
        await raw_iq(pa, None, "set", nick_xml("current", "Alice B."))
        pb = await connect(server, bob, plugins=PLUGINS, presence=False)
        events = message_queue(pb)
        await interested(pb)
        last = await next_event(events)
        assert last.find(f".//{{{NICK}}}nick").text == "Alice B."
        assert last.find(f"{{{EVENT}}}event/{{{EVENT}}}items").get("node") == NICK
        await disconnect(pa, pb, pc)

    run(scenario())
