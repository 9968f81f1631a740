"""Three ``pubsubd component`` instances share 2,000 feeds through one PostgreSQL database,
behind one front (our own component listener; then ejabberd, which balances components too).

Entries appear in random feeds while the instances poll; one instance is killed with SIGKILL
half-way. Checked: every new entry reaches its subscriber exactly once, no feed is ever
fetched by two instances at once, the fetches in flight to one host stay within
``feeds.max_per_host`` across instances, and the feeds the dead instance held are fetched
by the others within one lease period of its death.

Subscriptions are written before the instances start (:func:`scale_support.seed`): this
test is about feed work, not about caches learning of subscriptions made elsewhere.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import ServerProcess, connect, disconnect, run, until
from peers import require_peer

from tests.pg import new_database, require_postgres

from .component_hosts import SECRET, EjabberdHost
from .scale_support import (
    FeedFarm,
    event_items,
    instances,
    lease_owners,
    overlapping_fetches,
    seed,
)
from .test_components_mode import ComponentProcess

LEASE = 4.0  # feeds.lease_seconds: how soon a dead instance's feeds are taken over
SLACK = 6.0  # a loaded machine's scheduling, on top of the lease
MAX_PER_HOST = 2


def feeds_settings(interval: float) -> dict[str, Any]:
    return {
        "allow_hosts": ["127.0.0.0/8"],
        "default_interval": interval, "min_interval": interval, "max_interval": interval,
        "error_backoff": 1.0, "max_error_backoff": 2.0,
        "host_spacing": 0.0, "max_per_host": MAX_PER_HOST, "max_concurrent": 24,
        "lease_seconds": LEASE, "first_poll": "none",
    }


class Notifications:
    """Every (node, item id) a subscriber's client receives in pubsub event messages."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def attach(self, client: Any) -> None:
        def incoming(stanza: Any) -> Any:  # every stanza, whatever handlers it has
            for key in event_items(stanza.xml):
                self.counts[key] += 1
            return stanza

        client.add_filter("in", incoming)


def scenario(*, farm: FeedFarm, url: str, subscribers: Sequence[str],
             connect_subscriber: Callable[[str], Any], components: list[ComponentProcess],
             waves: int, per_wave: int, wave_every: float, kill_after_wave: int) -> None:
    notes = Notifications()
    expected: dict[tuple[str, str], int] = {}  # (node, item) → feed index
    rng = random.Random(11)
    died: dict[str, Any] = {}

    async def kill_while_working(victim: ComponentProcess) -> None:
        """SIGKILL the instance while it holds leases (its fetches are held by the farm, so
        it surely does; no lease is released), then note the leases it left behind.

        It is killed while waiting for the network, not between storing an entry and sending
        its notifications: a kill in that window of milliseconds loses the notification (the
        taker sees the entry stored and does not publish it again; see docs/scaling.md)."""
        farm.stall("i0")
        await until(lambda: farm.stalled_now > 0
                    and time.time() - farm.answered.get("i0", 0.0) > 1.0, timeout=30.0)
        assert victim.proc is not None
        victim.proc.kill()
        died["at"] = time.time()
        victim.proc.wait()
        died["held"] = [f for f, o in lease_owners(url).items() if o == "i0"]
        farm.release()

    async def main() -> None:
        clients = [await connect_subscriber(jid) for jid in subscribers]
        for client in clients:
            notes.attach(client)
        for wave in range(waves):
            for i in rng.sample(range(farm.count), per_wave):
                guid = f"f{i}-w{wave}"
                farm.add_entry(i, guid)
                expected[(farm.url(i), guid)] = i
            if wave == kill_after_wave:
                await kill_while_working(components[0])
            await asyncio.sleep(wave_every)
        try:
            await until(lambda: all(notes.counts[k] for k in expected), timeout=60.0)
        except AssertionError:
            pass  # what is missing is reported below
        finally:
            await disconnect(*clients)

    run(main())

    missing = [k for k in expected if notes.counts[k] == 0]
    assert not missing, (f"{len(missing)} of {len(expected)} new entries never notified, "
                         f"e.g. {missing[:5]}; fetches by instance: "
                         f"{Counter(f.instance for f in farm.fetches)}")
    twice = {k: n for k, n in notes.counts.items() if n > 1}
    assert not twice, f"notified more than once: {list(twice.items())[:5]}"
    assert set(notes.counts) == set(expected), "only new entries are notified"

    fetches = list(farm.fetches)
    by_instance = Counter(f.instance for f in fetches)
    assert {"i0", "i1", "i2"} <= set(by_instance), by_instance  # the work was shared
    clash = overlapping_fetches(fetches)
    assert not clash, f"feeds fetched concurrently: {clash[:3]}"
    assert max(farm.max_in_flight.values()) <= MAX_PER_HOST, farm.max_in_flight
    assert not [f for f in fetches if f.instance == "i0" and f.start > died["at"] + 0.5]

    # The dead instance's feeds: each fetched by a survivor within the lease period.
    held = {farm.url(i): i for i in range(farm.count) if farm.url(i) in died["held"]}
    assert held, "the killed instance held no lease: kill it while it works"
    taken = {f.feed: f.start for f in sorted(fetches, key=lambda f: -f.start)
             if f.instance != "i0" and f.start > died["at"]}
    late = {i: taken.get(i) for i in held.values()
            if taken.get(i) is None or taken[i] - died["at"] > LEASE + SLACK}
    assert not late, f"not taken over within the lease: {list(late.items())[:5]}"


def test_three_instances_share_the_feeds_behind_our_front(tmp_path: Path) -> None:
    require_postgres()
    url = new_database()
    subscribers = [f"s{n}@localhost" for n in range(4)]
    with FeedFarm(count=2000, hosts=8, delay=0.005) as farm:
        interval = 12.0
        seed(url, farm, "pubsub.localhost", subscribers, interval, start_in=2.0)
        (tmp_path / "front").mkdir()
        front = ServerProcess(tmp_path / "front", extra={
            "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                          {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
                          {"kind": "component", "address": "127.0.0.1", "port": 0}],
            "components": {"pubsub.localhost": {"secret": SECRET}},
            "pubsub": {"enabled": False}, "feeds": {"enabled": False},
            "log": {"level": "INFO"},
        })
        front.start()
        for jid in subscribers:
            front.add_user(jid.split("@")[0])
        components = instances(tmp_path, 3, front_port=front.port("component"),
                               domain="pubsub.localhost", secret=SECRET, url=url,
                               feeds=feeds_settings(interval))
        try:
            for component in components:
                component.start()
            scenario(farm=farm, url=url, subscribers=subscribers,
                     connect_subscriber=lambda jid: connect(front, jid),
                     components=components, waves=6, per_wave=30, wave_every=2.0,
                     kill_after_wave=2)
        finally:
            for proc in (*components, front):
                if proc.alive():
                    proc.kill()


class ScaleEjabberd(EjabberdHost):
    USERS = ("s0", "s1")


class EjabberdEndpoint:
    def __init__(self, host: EjabberdHost) -> None:
        self.c2s_port = host.c2s_port


def test_three_instances_share_the_feeds_behind_ejabberd(tmp_path: Path) -> None:
    require_postgres()
    require_peer("erl", "ejabberdctl")
    url = new_database()
    host = ScaleEjabberd(tmp_path / "ejabberd")
    subscribers = [f"{u}@{host.domain}" for u in host.USERS]
    with FeedFarm(count=400, hosts=4, delay=0.005) as farm:
        interval = 8.0
        seed(url, farm, host.component_domain, subscribers, interval, start_in=2.0)
        host.start()
        components = instances(tmp_path, 3, front_port=host.component_port,
                               domain=host.component_domain, secret=SECRET, url=url,
                               feeds=feeds_settings(interval))
        try:
            for component in components:
                component.start()
            endpoint = EjabberdEndpoint(host)
            scenario(farm=farm, url=url, subscribers=subscribers,
                     connect_subscriber=lambda jid: connect(endpoint, jid),  # type: ignore[arg-type]
                     components=components, waves=4, per_wave=15, wave_every=2.0,
                     kill_after_wave=1)
        finally:
            for component in components:
                if component.alive():
                    component.kill()
            host.stop()
