"""Pubsub fan-out (XEP-0060 §7.1): one publisher, one node with many online subscribers.

The publisher (a server admin, so it may create nodes on both servers) pipelines every publish
at once; each subscriber counts the notifications it receives, by a text each one carries once
(its entry's id), without parsing them: the load generator stays lighter than the servers.
Subscriptions use the subscriber's full JID (XEP-0060 §6.1.1 allows any JID whose bare JID is
the requester's), so delivery does not depend on presence handling, which differs between the
servers.
"""

from __future__ import annotations

import asyncio
import time

from lxml import etree

from bench.clients import close_all, drain, login_many, register_accounts
from bench.loadgen import WorkerContext, Workers
from bench.measure import Metric, ScenarioResult, Snapshot, ratio
from bench.options import Options
from bench.profile import window_ends, window_starts
from bench.servers import ServerUnderTest
from bench.wire import IQ, Connection, XmppError, escape

MODULE = __name__
PUBSUB_NS = "http://jabber.org/protocol/pubsub"
ITEM_MARKER = b"urn:bench:item:"  # in every published entry's <id/>, once
DISCO_INFO = "http://jabber.org/protocol/disco#info"
NODE = "bench-fanout"

METRICS = (
    Metric("notif_per_s", "notifications delivered per second", "msg/s"),
    Metric("notif_per_cpu_s", "notifications per server CPU-second", "msg/CPU-s"),
    Metric("last_ms", "time until the last subscriber has the last item", "ms",
           higher_is_better=False),
    Metric("publish_ms", "time until every publish is acknowledged", "ms",
           higher_is_better=False),
    Metric("server_cpu_s", "server CPU for the fan-out", "s", higher_is_better=False),
    Metric("load_cpu_s", "load generator CPU for the fan-out", "s", higher_is_better=False),
)


def subscribers(opts: Options) -> list[str]:
    return [f"s{i}" for i in range(opts.subscribers)]


def unavailable(server: ServerUnderTest) -> str | None:
    """Why ``server`` cannot run the scenario (no pubsub service on pubsub.<domain>), or None."""
    async def probe() -> str | None:
        await register_accounts(server.target, [server.publisher])
        [conn] = await login_many(server.target, [(server.publisher, "probe")])
        try:
            reply = await conn.iq(f"<query xmlns='{DISCO_INFO}'/>", to=server.pubsub_domain,
                                  ident="disco", deadline=10)
        finally:
            await conn.close()
        features = {f.get("var") for f in reply.iter(f"{{{DISCO_INFO}}}feature")}
        if reply.get("type") != "result" or PUBSUB_NS not in features:
            return f"no XEP-0060 service answers at {server.pubsub_domain}"
        return None

    try:
        return asyncio.run(probe())
    except (XmppError, OSError, TimeoutError) as exc:
        return f"probe failed: {exc}"


def _entry(i: int) -> str:
    return (f"<item id='item-{i}'><entry xmlns='http://www.w3.org/2005/Atom'>"
            f"<title>Benchmark item {i}</title><id>urn:bench:item:{i}</id>"
            f"<updated>2024-01-01T00:00:00Z</updated><summary>A notification payload of a "
            f"realistic size, as a feed entry would be syndicated to every subscriber of its "
            f"node. Item number {i}.</summary></entry></item>")


def _configure(max_items: int) -> str:
    """A node keeping every published item, so no server trims (and notifies retractions)."""
    return ("<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
            "type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>"
            f"<field var='pubsub#max_items'><value>{max_items}</value></field></x></configure>")


async def _create_node(conn: Connection, service: str, max_items: int | None = None) -> None:
    reply = None
    if max_items is not None:
        reply = await conn.iq(f"<pubsub xmlns='{PUBSUB_NS}'><create node='{NODE}'/>"
                              f"{_configure(max_items)}</pubsub>",
                              to=service, type_="set", ident="create")
    if reply is None or (reply.get("type") != "result"
                         and reply.find(".//{*}conflict") is None):
        reply = await conn.iq(f"<pubsub xmlns='{PUBSUB_NS}'><create node='{NODE}'/></pubsub>",
                              to=service, type_="set", ident="create")
    if reply.get("type") != "result" and reply.find(".//{*}conflict") is None:
        raise XmppError(f"node creation failed: {etree.tostring(reply)[:300]!r}")


async def fanout_worker(ctx: WorkerContext) -> None:
    p = ctx.params
    service: str = p["service"]
    names: list[str] = p["subscribers"]
    mine = [names[i] for i in ctx.share(len(names))]
    conns = await login_many(ctx.target, [(n, "bench") for n in mine], spread=p["spread"])

    async def subscribe(conn: Connection) -> None:
        conn.send(b"<presence/>")
        reply = await conn.iq(f"<pubsub xmlns='{PUBSUB_NS}'><subscribe node='{NODE}' "
                              f"jid='{escape(conn.jid)}'/></pubsub>", to=service, type_="set",
                              ident="sub", deadline=120)
        if reply.get("type") != "result":
            raise XmppError(f"subscribe failed: {etree.tostring(reply)[:300]!r}")

    publisher: Connection | None = None
    if ctx.index == 0:
        [publisher] = await login_many(ctx.target, [(p["publisher"], "bench")])
        await _create_node(publisher, service, max(p["items"], 1))
    await ctx.sync("node")
    gate = asyncio.Semaphore(64)

    async def gated(conn: Connection) -> None:
        async with gate:
            await subscribe(conn)

    await asyncio.gather(*(gated(c) for c in conns))
    await asyncio.sleep(0.5)
    for conn in conns:
        conn.take_ready()
    await ctx.sync("ready")
    items = p["items"]
    started = time.monotonic()
    acked_at = None
    if publisher is not None:
        publisher.send("".join(
            f"<iq type='set' id='pub{i}' to='{service}'><pubsub xmlns='{PUBSUB_NS}'>"
            f"<publish node='{NODE}'>{_entry(i)}</publish></pubsub></iq>"
            for i in range(items)).encode())

    async def acks() -> float:
        assert publisher is not None
        left = items
        while left:
            for el in await publisher.receive_some():
                if el.tag == IQ and (el.get("id") or "").startswith("pub"):
                    if el.get("type") != "result":
                        raise XmppError(f"publish failed: {etree.tostring(el)[:300]!r}")
                    left -= 1
        return time.monotonic()

    async def receive(conn: Connection) -> tuple[int, float]:
        # Each notification carries its item's entry, whose <id/> text names the item once
        # (see _entry); counted in the bytes, not parsed (Connection.count_raw).
        return items, await conn.count_raw(ITEM_MARKER, items)

    async with asyncio.timeout(p["timeout"]):
        ack_task = asyncio.create_task(acks()) if publisher else None
        outcomes = await asyncio.gather(*(receive(c) for c in conns))
        if ack_task:
            acked_at = await ack_task
    await ctx.sync("done", {"started": started if publisher else None, "acked": acked_at,
                            "received": sum(g for g, _ in outcomes),
                            "last": max((t for _, t in outcomes), default=0.0)})
    if publisher is not None:
        reader = asyncio.create_task(drain(publisher))
        await publisher.iq(f"<pubsub xmlns='{PUBSUB_NS}#owner'><delete node='{NODE}'/></pubsub>",
                           to=service, type_="set", ident="delete")
        reader.cancel()
    await close_all(conns + ([publisher] if publisher else []))


def run(server: ServerUnderTest, opts: Options) -> ScenarioResult:
    names = subscribers(opts)
    asyncio.run(register_accounts(server.target, [server.publisher, *names]))
    params = {"subscribers": names, "items": opts.items, "spread": opts.spread,
              "service": server.pubsub_domain, "publisher": server.publisher,
              "timeout": 300.0}
    pool = Workers(f"{MODULE}:fanout_worker", opts.workers, server.target, params)
    try:
        pool.reach("node")
        pool.release()
        pool.reach("ready")
        before, load_before = Snapshot.of(server), pool.cpu()
        window_starts(server.recording)
        pool.release()
        done = pool.reach("done")
        after, load_after = Snapshot.of(server), pool.cpu()
        window_ends(server.recording)
        pool.release()
        pool.finish()
    finally:
        pool.kill()
    started = next(d["started"] for d in done if d["started"] is not None)
    acked = next(d["acked"] for d in done if d["acked"] is not None)
    received = sum(d["received"] for d in done)
    last = max(d["last"] for d in done) - started
    cpu = after.cpu - before.cpu
    result = ScenarioResult("fanout", server.name)
    result.values = {
        "notif_per_s": received / last if last > 0 else None,
        "notif_per_cpu_s": ratio(received, cpu),
        "last_ms": last * 1000,
        "publish_ms": (acked - started) * 1000,
        "server_cpu_s": cpu,
        "load_cpu_s": load_after - load_before,
    }
    result.notes.append(f"{received} notifications ({opts.subscribers} subscribers × "
                        f"{opts.items} items, pipelined by one publisher)")
    return result
