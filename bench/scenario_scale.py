"""Feed work shared by 1, 2 and 4 ``pubsubd component`` instances on one PostgreSQL database.

Topology, all on this machine: a feed farm process (``FEEDS`` feeds over ten loopback hosts,
mostly answering 304, one feed in twenty changing at every request), a throw-away PostgreSQL
cluster (the tests' :mod:`tests.pg`), a front pubsubd with a component listener, and N
instances of ``pubsubd component`` connected to it, all polling the same feed table. One
client on the front follows every changing feed's node (the notifications travel component →
front → client) and another pings the front every 100 ms.

The polling period is short enough that the feeds are always overdue: every instance count
measures how many polls the instances manage, not the demand. Figures per instance count:
feeds polled per minute (all instances), polls per CPU-second of one instance, entries
notified per second (received by the client), PostgreSQL's CPU (all its processes) and the
front's c2s ping p99.

The database is seeded once through the stores (:mod:`bench.scale_seed`) and reused by the
three runs; 100,000 feeds take several minutes to seed on a busy two-core machine, so the
count is a flag::

    python -m bench.scenario_scale --feeds 20000 --instances 1,2,4 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import scenario_feeds
from bench.clients import login_many, register_accounts
from bench.measure import Metric, ScenarioResult, percentile
from bench.options import Options
from bench.servers import CLOCK_TICKS, ROOT, Pubsubd, ServerUnderTest, cpu_seconds, free_port
from bench.wire import IQ, PING_NS, Connection, XmppError

log = logging.getLogger("bench.scale")

FEEDS = 20_000  # the default run; --feeds 100000 for the full figure (slow to seed)
INSTANCES = (1, 2, 4)
CHANGING_EVERY = 20  # one feed in twenty changes at every request
PERIOD = 60.0  # seconds; shorter than the instances need for a round, so all stay due
WARMUP = 10.0
MEASURE = 30.0
LEASE = 15.0
SECRET = "bench-scale-secret"
COMPONENT = "pubsub.localhost"
READER = "reader"
PINGER = "scaleping"

METRICS = tuple(
    metric for n in INSTANCES for metric in (
        Metric(f"polls_per_min_{n}", f"{n} instance(s): feeds polled per minute, all", "polls/min"),
        Metric(f"polls_per_cpu_s_{n}", f"{n} instance(s): polls per CPU-second of an instance",
               "polls/CPU-s"),
        Metric(f"notified_per_s_{n}", f"{n} instance(s): entries notified per second",
               "entries/s"),
        Metric(f"db_cpu_{n}", f"{n} instance(s): PostgreSQL CPU", "cores",
               higher_is_better=False),
        Metric(f"ping_p99_{n}", f"{n} instance(s): front c2s ping p99", "ms",
               higher_is_better=False),
    ))


def unavailable(server: ServerUnderTest) -> str | None:
    if server.name == "pubsubd":
        return None
    return "the scale scenario starts its own front and instances; measured once, with pubsubd"


# -- the farm: scenario_feeds' HTTP farm, with a changing share -------------------------------


class ScaleFarm(scenario_feeds.FeedFarm):
    """Feeds whose number is a multiple of CHANGING_EVERY have two new entries at every
    request; the others never change (304 to a conditional request)."""

    def answer(self, path: str, if_none_match: str | None) -> tuple[int, bytes, str]:
        if not (path.startswith("/feed/") and path.endswith(".xml")):
            return 404, b"not found\n", ""
        feed = int(path[6:-4])
        gen = self.generation.get(feed, 0)
        if feed % CHANGING_EVERY == 0:
            gen += 1
            self.generation[feed] = gen
        etag = f'"{feed}-{gen}"'
        if if_none_match == etag:
            self.shared.not_modified.value += 1
            return 304, b"", etag
        self.shared.documents.value += 1
        newest = scenario_feeds.ENTRIES_PER_DOC - 1 + gen * scenario_feeds.NEW_PER_CHANGE
        return 200, scenario_feeds.rss_document(feed, newest), etag


def _farm_main(shared: scenario_feeds.FarmShared, ports: Any) -> None:
    asyncio.run(ScaleFarm(shared).serve(ports))


def feed_urls(ports: list[int], count: int) -> list[str]:
    hosts = scenario_feeds.HOSTS
    return [f"http://127.0.0.{scenario_feeds.FIRST_HOST + i % hosts}:{ports[i % hosts]}"
            f"/feed/{i}.xml" for i in range(count)]


# -- processes --------------------------------------------------------------------------------


class Front(Pubsubd):
    """The XMPP front: clients log in here; the instances connect as one component."""

    name = "front"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.component_port = free_port()
        self.config["listeners"] = [
            {"kind": "c2s", "address": "127.0.0.1", "port": self.port},
            {"kind": "component", "address": "127.0.0.1", "port": self.component_port}]
        self.config["components"] = {COMPONENT: {"secret": SECRET, "max_connections": 8}}
        self.config["pubsub"] = {"enabled": False}
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))


@dataclass
class Instance:
    """One ``pubsubd component`` process polling the shared feeds."""

    workdir: Path
    index: int
    url: str
    front: Front
    proc: subprocess.Popen[bytes] | None = None
    control: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.control = self.workdir / "control.sock"
        hosts = [f"127.0.0.{scenario_feeds.FIRST_HOST + h}" for h in range(scenario_feeds.HOSTS)]
        config = {
            "domains": ["localhost"], "listeners": [], "data_dir": str(self.workdir),
            "storage": {"url": self.url, "pool_size": 8},
            "control": {"socket": str(self.control)},
            "component_of": {"host": "127.0.0.1", "port": self.front.component_port,
                             "domain": COMPONENT, "secret": SECRET},
            "feeds": {"allow_hosts": hosts, "min_interval": PERIOD, "default_interval": PERIOD,
                      "max_interval": PERIOD, "error_backoff": PERIOD, "host_spacing": 0.0,
                      "max_per_host": 4, "max_concurrent": 32, "first_poll": "none",
                      "lease_seconds": LEASE, "instance_id": f"i{self.index}"},
            "log": {"level": os.environ.get("PUBSUBD_BENCH_LOG", "WARNING")},
        }
        self.config_path = self.workdir / "pubsubd.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pubsubd", "component", "--config", str(self.config_path)],
            cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.stats()
                return
            except Exception:  # noqa: BLE001 - not listening yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"instance {self.index} did not start") from None
                time.sleep(0.2)

    def stats(self) -> dict[str, Any]:
        from pubsubd.admin_cli import call

        return dict(call(self.control, "stats.poller", {}))

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # leases are given back on the way out
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def postgres_cpu() -> float:
    """CPU seconds of the tests' PostgreSQL cluster: the postmaster and its children."""
    from tests.pg import shared_cluster

    pid_file = shared_cluster().data / "postmaster.pid"
    master = int(pid_file.read_text().split()[0])
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        if int(entry.name) == master or int(fields[1]) == master:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


# -- the clients on the front -----------------------------------------------------------------


@dataclass
class Clients:
    """The reader counting notifications and the pinger's round trips."""

    notified: int = 0
    rtts: list[float] = field(default_factory=list)
    pinging: bool = False


async def reader_loop(conn: Connection, clients: Clients) -> None:
    while True:
        for element in await conn.receive_some():
            if element.tag.endswith("message"):
                clients.notified += len(element.findall(
                    ".//{http://jabber.org/protocol/pubsub#event}item"))


async def ping_loop(conn: Connection, clients: Clients) -> None:
    n = 0
    while True:
        n += 1
        ident = f"p{n}"
        sent = time.monotonic()
        conn.send(f"<iq type='get' id='{ident}' to='localhost'><ping xmlns='{PING_NS}'/></iq>"
                  .encode())
        reply = await conn.wait_for(IQ, ident, deadline=30)
        if reply.get("type") != "result":
            raise XmppError("ping failed")
        if clients.pinging:
            clients.rtts.append(time.monotonic() - sent)
        await asyncio.sleep(max(0.0, sent + 0.1 - time.monotonic()))


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Round:
    instances: int
    polls: int
    seconds: float
    instance_cpu: float
    notified: int
    db_cpu: float
    rtts: list[float]

    def values(self) -> dict[str, float | None]:
        n = self.instances
        p99 = percentile(sorted(self.rtts), 0.99)
        return {
            f"polls_per_min_{n}": self.polls / self.seconds * 60,
            f"polls_per_cpu_s_{n}": self.polls / self.instance_cpu if self.instance_cpu else None,
            f"notified_per_s_{n}": self.notified / self.seconds,
            f"db_cpu_{n}": self.db_cpu / self.seconds,
            f"ping_p99_{n}": p99 * 1000 if p99 is not None else None,
        }


def measure(counts: tuple[int, ...], feeds: int, seconds: float, workdir: Path) -> list[Round]:
    from bench.scale_seed import seed
    from tests.pg import new_database

    ctx = multiprocessing.get_context("spawn")
    shared = scenario_feeds.FarmShared.create(ctx)
    ports_queue = ctx.Queue()
    farm = ctx.Process(target=_farm_main, args=(shared, ports_queue), daemon=True)
    farm.start()
    front = Front(workdir / "front")
    rounds: list[Round] = []
    try:
        ports = [ports_queue.get(timeout=30) for _ in range(scenario_feeds.HOSTS)]
        urls = feed_urls(ports, feeds)
        url = new_database()
        started = time.monotonic()
        seed(url, urls, changing_every=CHANGING_EVERY, reader=f"{READER}@localhost",
             service=COMPONENT, period=PERIOD)
        log.info("seeded %d feeds in %.0f s", feeds, time.monotonic() - started)
        front.start()
        asyncio.run(register_accounts(front.target, [READER, PINGER]))
        for n in counts:
            rounds.append(asyncio.run(one_round(n, url, front, workdir, seconds)))
            log.info("%d instance(s): %s", n, {k: round(v, 1) for k, v in
                                               rounds[-1].values().items() if v is not None})
    finally:
        front.stop()
        farm.kill()
    return rounds


async def one_round(n: int, url: str, front: Front, workdir: Path, seconds: float) -> Round:
    instances = [Instance(workdir / f"round{n}" / f"i{k}", k, url, front) for k in range(n)]
    clients = Clients()
    reader, pinger = await login_many(front.target, [(READER, "r"), (PINGER, "p")])
    reader.send(b"<presence/>")
    tasks = [asyncio.create_task(reader_loop(reader, clients)),
             asyncio.create_task(ping_loop(pinger, clients))]
    try:
        for instance in instances:
            await asyncio.to_thread(instance.start)
        await asyncio.sleep(WARMUP)
        before = [await asyncio.to_thread(i.stats) for i in instances]
        cpu0, db0, notified0 = [i.cpu() for i in instances], postgres_cpu(), clients.notified
        t0 = time.monotonic()
        clients.pinging = True
        await asyncio.sleep(seconds)
        clients.pinging = False
        elapsed = time.monotonic() - t0
        after = [await asyncio.to_thread(i.stats) for i in instances]
        cpu = [i.cpu() - c for i, c in zip(instances, cpu0, strict=True)]
        db = postgres_cpu() - db0
        polls = sum(a["fetches"] - b["fetches"] for a, b in zip(after, before, strict=True))
        per_instance = [a["fetches"] - b["fetches"] for a, b in zip(after, before, strict=True)]
        log.info("%d instance(s): polls per instance %s, CPU %s", n, per_instance,
                 [round(c, 1) for c in cpu])
        return Round(n, polls, elapsed, statistics.mean(cpu), clients.notified - notified0,
                     db, list(clients.rtts))
    finally:
        for task in tasks:
            task.cancel()
        for instance in instances:
            await asyncio.to_thread(instance.stop)
        for conn in (reader, pinger):
            conn.abort()


def run(server: ServerUnderTest, opts: Options) -> ScenarioResult:
    """The bench.run entry: the default sizes, its own front and instances."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pubsubd-scale-") as tmp:
        rounds = measure(INSTANCES, FEEDS, MEASURE, Path(tmp))
    values: dict[str, float | None] = {}
    for r in rounds:
        values.update(r.values())
    return ScenarioResult("scale", server.name, values=values,
                          notes=[f"{FEEDS} feeds, 1 in {CHANGING_EVERY} changing; "
                                 f"{MEASURE:.0f} s measured per instance count"])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(prog="python -m bench.scenario_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feeds", type=int, default=FEEDS)
    p.add_argument("--instances", default=",".join(map(str, INSTANCES)))
    p.add_argument("--seconds", type=float, default=MEASURE)
    p.add_argument("--workdir", default="", help="keep the processes' files here")
    args = p.parse_args(argv)
    import tempfile

    counts = tuple(int(c) for c in args.instances.split(","))
    if args.workdir:
        rounds = measure(counts, args.feeds, args.seconds, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="pubsubd-scale-") as tmp:
            rounds = measure(counts, args.feeds, args.seconds, Path(tmp))
    print(f"\n{args.feeds} feeds, 1 in {CHANGING_EVERY} changing, {args.seconds:.0f} s each\n")
    print("| instances | polls/min (all) | polls per CPU-s (one instance) | entries notified/s "
          "| PostgreSQL CPU (cores) | front ping p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for r in rounds:
        v = r.values()
        n = r.instances
        print(f"| {n} | {v[f'polls_per_min_{n}']:.0f} | {v[f'polls_per_cpu_s_{n}'] or 0:.0f} "
              f"| {v[f'notified_per_s_{n}']:.1f} | {v[f'db_cpu_{n}']:.2f} "
              f"| {v[f'ping_p99_{n}'] or 0:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
