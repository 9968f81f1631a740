"""Core scenarios: 1:1 message throughput and latency, idle connections, logins per second.

Each scenario has a worker coroutine (runs in the load generator processes) and a driver (runs
in the parent, measures the server between barrier phases and turns the figures into a
:class:`ScenarioResult`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from lxml import etree

from bench.clients import PASSWORD, close_all, login_many, register_accounts
from bench.loadgen import WorkerContext, Workers
from bench.measure import Metric, ScenarioResult, Snapshot, percentile, ratio
from bench.options import Options
from bench.servers import ServerUnderTest
from bench.wire import BODY, MESSAGE, Connection, XmppError, escape, source_address

MODULE = __name__

MESSAGES_METRICS = (
    Metric("msgs_per_s", "messages delivered per second", "msg/s"),
    Metric("msgs_per_cpu_s", "messages per server CPU-second", "msg/CPU-s"),
    Metric("p50_ms", "delivery latency p50 (loaded)", "ms", higher_is_better=False),
    Metric("p99_ms", "delivery latency p99 (loaded)", "ms", higher_is_better=False),
    Metric("server_cpu_s", "server CPU during the run", "s", higher_is_better=False),
    Metric("server_cpu_util", "server CPU utilisation", "cores", higher_is_better=False),
    Metric("load_cpu_s", "load generator CPU during the run", "s", higher_is_better=False),
)
LATENCY_METRICS = (
    Metric("p50_ms", "round trip p50 (one message in flight)", "ms", higher_is_better=False),
    Metric("p99_ms", "round trip p99 (one message in flight)", "ms", higher_is_better=False),
    Metric("cpu_us_per_msg", "server CPU per message", "µs", higher_is_better=False),
)
IDLE_METRICS = (
    Metric("held", "idle connections held and answering ping", "conns"),
    Metric("kib_per_conn", "server memory per idle connection", "KiB", higher_is_better=False),
    Metric("rss_mib", "server RSS with all connections", "MiB", higher_is_better=False),
    Metric("connect_per_s", "connect+login+bind rate while filling", "conn/s"),
)
LOGIN_METRICS = (
    Metric("logins_per_s", "logins per second (connect, PLAIN, bind, close)", "login/s"),
    Metric("logins_per_cpu_s", "logins per server CPU-second", "login/CPU-s"),
    Metric("server_cpu_util", "server CPU utilisation", "cores", higher_is_better=False),
)


def message_accounts(pairs: int) -> list[str]:
    return [f"m{i}" for i in range(2 * pairs)]


def idle_accounts(opts: Options) -> list[str]:
    return [f"i{i}" for i in range(min(opts.idle_accounts, max(1, opts.idle)))]


# --- (a) 1:1 messages ----------------------------------------------------------------------

def _chat(to: str, count: int) -> bytes:
    stamp = f"{time.monotonic():.6f}"
    one = f"<message to='{escape(to)}' type='chat'><body>{stamp}</body></message>"
    return (one * count).encode()


def _sent_at(message: etree._Element, default: float) -> float:
    """The send time a message's body carries (see _chat); a plain loop over the children is
    cheaper than lxml's path search."""
    for child in message:
        if child.tag == BODY:
            return float(child.text or default)
    return default


async def messages_worker(ctx: WorkerContext) -> None:
    """Closed loop per pair: each delivered message lets its sender send one more."""
    p = ctx.params
    mine = list(ctx.share(p["pairs"]))
    # A resource per scenario: a server may still be closing the previous scenario's sessions.
    logins = [(f"m{2 * i + side}", p.get("resource", "bench")) for i in mine for side in (0, 1)]
    conns = await login_many(ctx.target, logins, first_index=2 * mine[0] if mine else 0,
                             spread=p["spread"])
    await ctx.sync("ready")
    stop_at = time.monotonic() + p["duration"]
    latencies: list[float] = []
    received = 0

    async def pair(sender: Connection, receiver: Connection) -> None:
        nonlocal received
        sender.send(_chat(receiver.jid, p["window"]))
        inflight = p["window"]
        while inflight:
            stanzas = await receiver.receive_some()
            now = time.monotonic()
            got = 0
            for el in stanzas:
                if el.tag == MESSAGE:
                    latencies.append(now - _sent_at(el, now))
                    got += 1
            inflight -= got
            received += got
            if got and now < stop_at and (p["limit"] == 0 or received < p["limit"]):
                sender.send(_chat(receiver.jid, got))
                inflight += got

    # One deadline for the whole run rather than one per read (asyncio.wait_for makes a task
    # per call): a server that stops answering still fails the scenario.
    async with asyncio.timeout(p["duration"] + 30):
        await asyncio.gather(*(pair(conns[2 * k], conns[2 * k + 1]) for k in range(len(mine))))
    await ctx.sync("done", {"received": received, "latencies": latencies})
    await close_all(conns)


def _messages(server: ServerUnderTest, opts: Options, scenario: str, pairs: int, window: int,
              duration: float, limit: int, workers: int) -> tuple[ScenarioResult, dict[str, Any]]:
    params = {"pairs": pairs, "window": window, "duration": duration, "spread": opts.spread,
              "limit": limit, "resource": f"{scenario}-{pairs}x{window}"}
    pool = Workers(f"{MODULE}:messages_worker", workers, server.target, params)
    try:
        pool.reach("ready")
        before, load_before = Snapshot.of(server), pool.cpu()
        pool.release()
        done = pool.reach("done")
        after, load_after = Snapshot.of(server), pool.cpu()
        pool.release()
        pool.finish()
    finally:
        pool.kill()
    received = sum(d["received"] for d in done)
    latencies = sorted(x for d in done for x in d["latencies"])
    wall = after.wall - before.wall
    cpu = after.cpu - before.cpu
    result = ScenarioResult(scenario, server.name)
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    result.values = {
        "msgs_per_s": received / wall if wall else None,
        "msgs_per_cpu_s": ratio(received, cpu),
        "p50_ms": p50 * 1000 if p50 is not None else None,
        "p99_ms": p99 * 1000 if p99 is not None else None,
        "server_cpu_s": cpu,
        "server_cpu_util": cpu / wall if wall else None,
        "cpu_us_per_msg": cpu / received * 1e6 if received else None,
        "load_cpu_s": load_after - load_before,
    }
    result.notes.append(f"{received} messages in {wall:.1f} s")
    return result, {"received": received}


def run_messages(server: ServerUnderTest, opts: Options) -> ScenarioResult:
    asyncio.run(register_accounts(server.target, message_accounts(opts.pairs)))  # more pairs
    result, _ = _messages(server, opts, "messages", opts.pairs, opts.window, opts.duration, 0,
                          opts.workers)
    result.notes[-1] += (f" ({opts.pairs} pairs, {opts.window} in flight per pair, "
                         f"{opts.workers} load processes)")
    return result


def run_latency(server: ServerUnderTest, opts: Options) -> ScenarioResult:
    """One pair, one message in flight: the latency the server adds when it is not busy."""
    result, _ = _messages(server, opts, "latency", 1, 1, 60.0, opts.latency_messages, 1)
    return result


# --- (b) idle connections ------------------------------------------------------------------

async def idle_worker(ctx: WorkerContext) -> None:
    p = ctx.params
    mine = list(ctx.share(p["idle"]))
    accounts = p["accounts"]
    conns: list[Connection] = []
    failures: list[str] = []
    gate = asyncio.Semaphore(p["concurrency"])

    async def one(k: int) -> None:
        async with gate:
            try:
                conn = await Connection.open(ctx.target, source_address(k, p["spread"]))
                await conn.login(accounts[k % len(accounts)], PASSWORD, f"r{k}")
                conns.append(conn)
            except (XmppError, OSError, TimeoutError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    await ctx.sync("start")
    started = time.monotonic()
    await asyncio.gather(*(one(k) for k in mine))
    filled = time.monotonic() - started
    await ctx.sync("connected", {"ok": len(conns), "failures": failures[:5],
                                 "failed": len(failures), "seconds": filled})
    await asyncio.sleep(p["hold"])
    alive = 0

    async def check(i: int, conn: Connection) -> None:
        nonlocal alive
        async with gate:
            try:
                await conn.ping(f"p{i}", deadline=60)
                alive += 1
            except (XmppError, OSError, TimeoutError):
                pass

    await asyncio.gather(*(check(i, c) for i, c in enumerate(conns)))
    await ctx.sync("held", {"alive": alive})
    for conn in conns:
        conn.abort()


def run_idle(server: ServerUnderTest, opts: Options) -> ScenarioResult:
    result = ScenarioResult("idle", server.name)
    # Warm the server up (lazy imports, caches) so the baseline holds only idle-connection cost.
    asyncio.run(_warm_up(server, idle_accounts(opts)[0]))
    time.sleep(1.0)
    baseline = server.rss()
    params = {"idle": opts.idle, "accounts": idle_accounts(opts), "spread": opts.spread,
              "hold": opts.hold, "concurrency": 64}
    pool = Workers(f"{MODULE}:idle_worker", opts.workers, server.target, params,
                   timeout=max(300.0, opts.idle / 20))
    try:
        pool.reach("start")
        pool.release()
        connected = pool.reach("connected")
        time.sleep(2.0)  # let the server settle (buffers, GC) before reading its RSS
        filled_rss = server.rss()
        pool.release()
        held = pool.reach("held")
        held_rss = server.rss()
        pool.release()
        pool.finish()
    finally:
        pool.kill()
    ok = sum(c["ok"] for c in connected)
    failed = sum(c["failed"] for c in connected)
    fill_seconds = max(c["seconds"] for c in connected)
    alive = sum(h["alive"] for h in held)
    result.values = {
        "held": float(alive),
        "kib_per_conn": (filled_rss - baseline) / ok if ok else None,
        "rss_mib": held_rss / 1024,
        "connect_per_s": ok / fill_seconds if fill_seconds else None,
    }
    result.notes.append(f"{ok} of {opts.idle} connected ({failed} failed), {alive} answered a "
                        f"ping after {opts.hold:.0f} s; RSS {baseline} KiB before, "
                        f"{filled_rss} KiB with all connected")
    for c in connected:
        result.notes.extend(f"failure: {f}" for f in c["failures"][:2])
    return result


async def _warm_up(server: ServerUnderTest, account: str) -> None:
    conns = await login_many(server.target, [(account, f"warm{i}") for i in range(20)])
    for conn in conns:
        await conn.ping()
    await close_all(conns)


# --- (c) logins ----------------------------------------------------------------------------

async def logins_worker(ctx: WorkerContext) -> None:
    p = ctx.params
    accounts: list[str] = p["accounts"]
    done = 0
    errors = 0
    await ctx.sync("ready")
    stop_at = time.monotonic() + p["duration"]

    async def loop(slot: int) -> None:
        nonlocal done, errors
        n = slot
        while time.monotonic() < stop_at:
            try:
                conn = await Connection.open(ctx.target, source_address(n, p["spread"]))
                await conn.login(accounts[n % len(accounts)], PASSWORD, f"l{slot}")
                await conn.close()
                done += 1
            except (XmppError, OSError, TimeoutError):
                errors += 1
            n += p["slots"]

    base = ctx.index * p["concurrency"]
    await asyncio.gather(*(loop(base + s) for s in range(p["concurrency"])))
    await ctx.sync("done", {"logins": done, "errors": errors})


def run_logins(server: ServerUnderTest, opts: Options) -> ScenarioResult:
    params = {"accounts": message_accounts(opts.pairs), "duration": opts.login_duration,
              "concurrency": opts.login_concurrency, "spread": opts.spread,
              "slots": opts.login_concurrency * opts.workers}
    pool = Workers(f"{MODULE}:logins_worker", opts.workers, server.target, params)
    try:
        pool.reach("ready")
        before = Snapshot.of(server)
        pool.release()
        done = pool.reach("done")
        after = Snapshot.of(server)
        pool.release()
        pool.finish()
    finally:
        pool.kill()
    logins = sum(d["logins"] for d in done)
    errors = sum(d["errors"] for d in done)
    wall, cpu = after.wall - before.wall, after.cpu - before.cpu
    result = ScenarioResult("logins", server.name)
    result.values = {
        "logins_per_s": logins / wall if wall else None,
        "logins_per_cpu_s": ratio(logins, cpu),
        "server_cpu_util": cpu / wall if wall else None,
    }
    result.notes.append(f"{logins} logins ({errors} failed) in {wall:.1f} s, "
                        f"{opts.login_concurrency * opts.workers} concurrent")
    return result


def provision(server: ServerUnderTest, opts: Options) -> None:
    names = message_accounts(opts.pairs) + idle_accounts(opts)
    asyncio.run(register_accounts(server.target, names))
