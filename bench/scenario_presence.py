"""Presence broadcast: a user with many online contacts changes presence; how long until all
of them have it (RFC 6121 §4.4.2), and what it costs the server.

Set-up happens over the wire, identically on both servers: every contact asks the hub for a
subscription and the hub approves it (RFC 6121 §3.1), so the hub's roster ends with one
subscription of type 'from' per contact. The measured rounds then change the hub's <show>.
"""

from __future__ import annotations

import asyncio
import time

from bench.clients import close_all, drain, login_many, register_accounts
from bench.loadgen import WorkerContext, Workers
from bench.measure import Metric, ScenarioResult, Snapshot, percentile, ratio
from bench.options import Options
from bench.servers import ServerUnderTest
from bench.wire import PRESENCE, Connection, XmppError

MODULE = __name__
HUB = "phub"
ROSTER_NS = "jabber:iq:roster"
SETUP_TIMEOUT = 600.0  # seconds for every subscription to be approved
ROSTER_GET = f"<iq type='get' id='roster'><query xmlns='{ROSTER_NS}'/></iq>".encode()

METRICS = (
    Metric("median_ms", "time until every contact has the new presence (median round)", "ms",
           higher_is_better=False),
    Metric("max_ms", "slowest round", "ms", higher_is_better=False),
    Metric("per_s", "presence stanzas delivered per second", "stanza/s"),
    Metric("per_cpu_s", "presence stanzas per server CPU-second", "stanza/CPU-s"),
)


def contacts(opts: Options) -> list[str]:
    return [f"p{i}" for i in range(opts.contacts)]


def unavailable(server: ServerUnderTest) -> str | None:
    """Why the scenario cannot run on ``server`` (no roster support), or None."""
    async def probe() -> str | None:
        await register_accounts(server.target, [HUB])
        [conn] = await login_many(server.target, [(HUB, "probe")])
        try:
            reply = await conn.iq(f"<query xmlns='{ROSTER_NS}'/>", ident="roster", deadline=10)
        finally:
            await conn.close()
        if reply.get("type") != "result":
            return "the server does not answer roster requests (RFC 6121 roster/presence)"
        return None

    try:
        return asyncio.run(probe())
    except (XmppError, OSError, TimeoutError) as exc:
        return f"probe failed: {exc}"


async def _subscribe_all(server: ServerUnderTest, opts: Options) -> None:
    """Each contact subscribes to the hub; the online hub approves every request."""
    names = contacts(opts)
    await register_accounts(server.target, [HUB, *names])
    [hub] = await login_many(server.target, [(HUB, "setup")])
    hub.send(b"<presence/>")
    members = await login_many(server.target, [(n, "setup") for n in names], spread=opts.spread)
    pending = {f"{n}@{server.domain}" for n in names}

    async def approve() -> None:
        while pending:
            for el in await hub.receive_some():
                if el.tag == PRESENCE and el.get("type") == "subscribe":
                    who = (el.get("from") or "").split("/")[0]
                    hub.send(f"<presence to='{who}' type='subscribed'/>".encode())
                    pending.discard(who)

    async def confirmed(conn: Connection) -> None:
        while True:
            for el in await conn.receive_some():
                # The approval itself goes to roster-interested resources only, but the
                # hub's available presence follows it to every one (RFC 6121 §3.1.6).
                if el.tag == PRESENCE and el.get("type") in (None, "subscribed") and (
                        el.get("from") or "").startswith(f"{HUB}@"):
                    return

    approver = asyncio.create_task(approve())
    for conn in members:
        # Behave like a client: roster, then initial presence, then the request.
        conn.send(ROSTER_GET)
        conn.send(b"<presence/>")
        conn.send(f"<presence to='{HUB}@{server.domain}' type='subscribe'/>".encode())
    async with asyncio.timeout(SETUP_TIMEOUT):
        await asyncio.gather(*(confirmed(c) for c in members))
        await approver
    await close_all([hub, *members])


async def presence_worker(ctx: WorkerContext) -> None:
    p = ctx.params
    names: list[str] = p["contacts"]
    mine = [names[i] for i in ctx.share(len(names))]
    conns = await login_many(ctx.target, [(n, "bench") for n in mine], spread=p["spread"])
    for conn in conns:
        conn.send(ROSTER_GET + b"<presence/>")
    hub: Connection | None = None
    if ctx.index == 0:
        [hub] = await login_many(ctx.target, [(HUB, "bench")])
        hub.send(ROSTER_GET + b"<presence/>")
    await asyncio.sleep(1.0)  # initial presences, probes and their answers settle
    for conn in conns:
        conn.take_ready()
    hub_reader = asyncio.create_task(drain(hub)) if hub else None
    await ctx.sync("ready")
    for round_ in range(p["rounds"]):
        status = f"round {round_}"
        started = None
        if hub is not None:
            started = time.monotonic()
            hub.send(f"<presence><show>away</show><status>{status}</status></presence>".encode())

        async def seen(conn: Connection, status: str = status) -> float:
            while True:
                for el in await conn.receive_some():
                    if el.tag == PRESENCE and el.findtext("{jabber:client}status") == status:
                        return time.monotonic()

        async with asyncio.timeout(60):
            arrivals = await asyncio.gather(*(seen(c) for c in conns))
        await ctx.sync(f"round{round_}", {"started": started, "last": max(arrivals, default=0.0),
                                          "count": len(arrivals)})
    if hub_reader:
        hub_reader.cancel()
    await close_all(conns + ([hub] if hub else []))


def run(server: ServerUnderTest, opts: Options) -> ScenarioResult:
    asyncio.run(_subscribe_all(server, opts))
    params = {"contacts": contacts(opts), "rounds": opts.presence_rounds, "spread": opts.spread}
    pool = Workers(f"{MODULE}:presence_worker", opts.workers, server.target, params)
    rounds: list[float] = []
    delivered = 0
    try:
        pool.reach("ready")
        before = Snapshot.of(server)
        pool.release()
        for r in range(opts.presence_rounds):
            data = pool.reach(f"round{r}")
            started = next(d["started"] for d in data if d["started"] is not None)
            rounds.append(max(d["last"] for d in data) - started)
            delivered += sum(d["count"] for d in data)
            pool.release()
        after = Snapshot.of(server)
        pool.finish()
    finally:
        pool.kill()
    busy = sum(rounds)
    cpu = after.cpu - before.cpu
    ordered = sorted(rounds)
    median = percentile(ordered, 0.5)
    result = ScenarioResult("presence", server.name)
    result.values = {
        "median_ms": median * 1000 if median is not None else None,
        "max_ms": ordered[-1] * 1000 if ordered else None,
        "per_s": delivered / busy if busy else None,
        "per_cpu_s": ratio(delivered, cpu),
    }
    result.notes.append(f"{opts.contacts} online contacts, {opts.presence_rounds} rounds: "
                        + ", ".join(f"{x * 1000:.0f}" for x in rounds) + " ms; server CPU "
                        f"{cpu:.2f} s over the rounds (includes the barrier pauses, idle)")
    return result
