"""When notifications go out: digests batched after pubsub#digest_frequency, temporary
subscriptions (pubsub#expire = presence) and catch-up that survives a kill -9 of the server."""

from __future__ import annotations

from pathlib import Path

from harness import ServerProcess, connect, disconnect, run

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


def subscribe_xml(node: str, jid: str, **options: str) -> str:
    fields = "".join(f"<field var='{k.replace('__', '#')}'><value>{v}</value></field>"
                     for k, v in options.items())
    return (f"<pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{jid}'/><options>"
            f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{PUBSUB}#subscribe_options</value></field>{fields}</x></options></pubsub>")


async def own_subscriptions(client: object, svc: str) -> list[str]:
    subs = await raw_iq(client, svc, "get", f"<pubsub xmlns='{PUBSUB}'><subscriptions/></pubsub>")
    return [s.get("node") for s in subs.iter(f"{{{PUBSUB}}}subscription")]


def test_digest_batches_and_temporary_subscription(server: ServerProcess) -> None:
    alice, bob = server.add_user("alice"), server.add_user("bob")
    svc = service_jid(server)

    async def scenario() -> None:
        publisher = await connect(server, alice, plugins=PUBSUB_PLUGINS)
        reader = await connect(server, bob, plugins=PUBSUB_PLUGINS)
        await publisher.plugin["xep_0060"].create_node(svc, "daily")
        await publisher.plugin["xep_0060"].create_node(svc, "session")
        events = message_queue(reader)
        await raw_iq(reader, svc, "set", subscribe_xml(
            "daily", bob, pubsub__digest="1", pubsub__digest_frequency="2000"))
        for item_id in ("d1", "d2", "d3"):
            await raw_iq(publisher, svc, "set", publish_xml("daily", item_id))
        await no_event(events, reader)  # nothing before the period (2 s) has elapsed
        batch = await next_event(events, 4.0)
        assert item_ids(batch) == ["d1", "d2", "d3"]  # one message with every item
        await no_event(events, reader)

        # XEP-0060 §12.5: pubsub#expire = presence ends with the subscriber's presence
        await raw_iq(reader, svc, "set", subscribe_xml("session", bob, pubsub__expire="presence"))
        assert sorted(await own_subscriptions(reader, svc)) == ["daily", "session"]
        await disconnect(reader)  # returns once the server has ended the session
        reader = await connect(server, bob, plugins=PUBSUB_PLUGINS)
        assert await own_subscriptions(reader, svc) == ["daily"]
        await disconnect(publisher, reader)

    run(scenario())


def test_catch_up_survives_kill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra={"pubsub": {"catch_up_max_items": 2}})
    server.start()
    try:
        alice, bob = server.add_user("alice"), server.add_user("bob")
        svc = service_jid(server)

        async def before() -> None:
            publisher = await connect(server, alice, plugins=PUBSUB_PLUGINS)
            reader = await connect(server, bob, plugins=PUBSUB_PLUGINS)
            await publisher.plugin["xep_0060"].create_node(svc, "news")
            await raw_iq(reader, svc, "set", subscribe_xml(
                "news", bob, pubsubd__catch_up="1", pubsub__include_body="1"))
            await disconnect(reader)  # returns once the server has ended the session
            for item_id in ("m1", "m2", "m3"):
                await raw_iq(publisher, svc, "set", publish_xml("news", item_id))
            await disconnect(publisher)

        run(before())
        server.restart(hard=True)  # SIGKILL: the held items must have been committed

        async def after() -> None:
            reader = await connect(server, bob, plugins=PUBSUB_PLUGINS, presence=False)
            events = message_queue(reader)
            reader.send_presence()
            caught_up = await next_event(events)
            assert item_ids(caught_up) == ["m2", "m3"]  # the newest, in order, capped at 2
            body = caught_up.findtext("{jabber:client}body") or ""
            assert "1 more item appeared while you were away; fetch them with a pubsub " \
                   "items request" in body, body
            await no_event(events, reader)
            await disconnect(reader)

        run(after())
    finally:
        if server.alive():
            server.kill()


def test_digest_batch_survives_kill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        alice, bob = server.add_user("alice"), server.add_user("bob")
        svc = service_jid(server)

        async def before() -> None:
            publisher = await connect(server, alice, plugins=PUBSUB_PLUGINS)
            reader = await connect(server, bob, plugins=PUBSUB_PLUGINS)
            await publisher.plugin["xep_0060"].create_node(svc, "weekly")
            events = message_queue(reader)
            # Long enough for the restart below to happen before the batch is due.
            await raw_iq(reader, svc, "set", subscribe_xml(
                "weekly", bob, pubsub__digest="1", pubsub__digest_frequency="6000"))
            for item_id in ("w1", "w2"):
                await raw_iq(publisher, svc, "set", publish_xml("weekly", item_id))
            await no_event(events, reader)
            await disconnect(publisher, reader)

        run(before())
        server.restart(hard=True)  # SIGKILL between the publishes and the digest

        async def after() -> None:
            reader = await connect(server, bob, plugins=PUBSUB_PLUGINS)
            events = message_queue(reader)
            batch = await next_event(events, 15.0)
            assert item_ids(batch) == ["w1", "w2"]
            await no_event(events, reader)
            await disconnect(reader)

        run(after())
    finally:
        if server.alive():
            server.kill()
