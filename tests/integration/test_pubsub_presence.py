"""Presence-aware delivery, catch-up after being offline, the service's own presence, and
durability of what the service acknowledged (XEP-0060 §12.6, §6.1.7; RFC 6121 §3)."""

from __future__ import annotations

import asyncio

from harness import ServerProcess, connect, disconnect, round_trip, run

from .pubsub_helpers import (
    PUBSUB,
    PUBSUB_PLUGINS,
    item_ids,
    message_queue,
    next_event,
    no_event,
    raw_iq,
    service_jid,
)


def publish_xml(node: str, item_id: str) -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item_id}'>"
            f"<entry xmlns='http://www.w3.org/2005/Atom'><title>{item_id}</title></entry>"
            f"</item></publish></pubsub>")


def options(fields: dict[str, list[str]]) -> str:
    values = "".join(f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in vals)
                     + "</field>" for var, vals in fields.items())
    return ("<options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type="
            "'hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field>"
            f"{values}</x></options>")


def subscribe_xml(node: str, jid: str, opts: str = "") -> str:
    return f"<pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{jid}'/>{opts}</pubsub>"


def test_show_values_with_two_resources(server: ServerProcess) -> None:
    alice, bob = server.add_user("alice"), server.add_user("bob")

    async def scenario() -> None:
        publisher = await connect(server, alice, plugins=PUBSUB_PLUGINS)
        at_desk = await connect(server, bob + "/desk", plugins=PUBSUB_PLUGINS)
        away = await connect(server, bob + "/phone", plugins=PUBSUB_PLUGINS, presence=False)
        away.send_presence(pshow="away")
        svc = service_jid(server)
        await publisher.plugin["xep_0060"].create_node(svc, "status")
        desk_events, away_events = message_queue(at_desk), message_queue(away)
        await raw_iq(at_desk, svc, "set", subscribe_xml(
            "status", bob, options({"pubsub#show-values": ["online", "chat"]})))
        await raw_iq(publisher, svc, "set", publish_xml("status", "one"))
        assert item_ids(await next_event(desk_events)) == ["one"]
        await no_event(away_events, away)
        # the away resource comes back: now it is allowed too
        away.send_presence()
        await round_trip(away)  # its new presence has been processed
        await raw_iq(publisher, svc, "set", publish_xml("status", "two"))
        assert item_ids(await next_event(away_events)) == ["two"]
        assert item_ids(await next_event(desk_events)) == ["two"]
        await disconnect(publisher, at_desk, away)

    run(scenario())


def test_catch_up_delivers_missed_items_in_order(server: ServerProcess) -> None:
    alice, bob = server.add_user("alice"), server.add_user("bob")

    async def scenario() -> None:
        publisher = await connect(server, alice, plugins=PUBSUB_PLUGINS)
        reader = await connect(server, bob, plugins=PUBSUB_PLUGINS)
        svc = service_jid(server)
        await publisher.plugin["xep_0060"].create_node(svc, "news")
        await raw_iq(publisher, svc, "set", publish_xml("news", "before"))
        await raw_iq(reader, svc, "set", subscribe_xml("news", bob, options(
            {"pubsubd#catch_up": ["1"]})))
        await disconnect(reader)  # returns once the server has ended the session
        for item_id in ("m1", "m2", "m3"):
            await raw_iq(publisher, svc, "set", publish_xml("news", item_id))
        reader = await connect(server, bob, plugins=PUBSUB_PLUGINS, presence=False)
        events = message_queue(reader)
        reader.send_presence()
        caught_up = await next_event(events)
        assert item_ids(caught_up) == ["m1", "m2", "m3"]
        await no_event(events, reader)  # nothing twice, no stale "last item"
        await disconnect(publisher, reader)

    run(scenario())


def test_service_presence_and_durability(server: ServerProcess) -> None:
    alice = server.add_user("alice")
    svc = service_jid(server)

    async def first() -> None:
        client = await connect(server, alice, plugins=PUBSUB_PLUGINS)
        got: asyncio.Queue[str] = asyncio.Queue()
        client.add_event_handler("presence_available", lambda p: got.put_nowait(str(p["from"])))
        client.add_event_handler("presence_subscribed", lambda p: got.put_nowait(
            "subscribed:" + str(p["from"])))
        client.send_presence_subscription(pto=svc)
        seen = {await asyncio.wait_for(got.get(), 5), await asyncio.wait_for(got.get(), 5)}
        assert seen == {f"subscribed:{svc}", svc}
        await client.plugin["xep_0060"].create_node(svc, "durable")
        await raw_iq(client, svc, "set", publish_xml("durable", "kept"))
        await raw_iq(client, svc, "set", subscribe_xml("durable", alice))
        await disconnect(client)

    run(first())
    server.restart(hard=True)  # SIGKILL: only what was committed survives

    async def second() -> None:
        client = await connect(server, alice, plugins=PUBSUB_PLUGINS)
        items = await raw_iq(client, svc, "get",
                             f"<pubsub xmlns='{PUBSUB}'><items node='durable'/></pubsub>")
        assert [i.get("id") for i in items.iter(f"{{{PUBSUB}}}item")] == ["kept"]
        subs = await raw_iq(client, svc, "get",
                            f"<pubsub xmlns='{PUBSUB}'><subscriptions/></pubsub>")
        assert [s.get("node") for s in subs.iter(f"{{{PUBSUB}}}subscription")] == ["durable"]
        await disconnect(client)

    run(second())


def test_connected_resource_without_presence_gets_notifications(server: ServerProcess) -> None:
    # XEP-0060 delivery is not gated on presence unless asked for; RFC 6121 §8.5.3.1 delivers
    # a message to a connected full JID even before its initial presence.
    alice, bob = server.add_user("alice"), server.add_user("bob")

    async def scenario() -> None:
        publisher = await connect(server, alice, plugins=PUBSUB_PLUGINS)
        quiet = await connect(server, bob + "/quiet", plugins=PUBSUB_PLUGINS, presence=False)
        svc = service_jid(server)
        await publisher.plugin["xep_0060"].create_node(svc, "plain")
        events = message_queue(quiet)
        await raw_iq(quiet, svc, "set", subscribe_xml("plain", bob + "/quiet", options(
            {"pubsubd#catch_up": ["1"]})))
        await raw_iq(publisher, svc, "set", publish_xml("plain", "one"))
        assert item_ids(await next_event(events)) == ["one"]
        await disconnect(publisher, quiet)

    run(scenario())
