"""Roster and presence worlds for pubsub service tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest

from pubsubd.pubsub.model import bare
from pubsubd.pubsub.service import PubSubService, ServiceConfig
from pubsubd.pubsub.store import MemoryPubSubStore

SERVICE = "pubsub.example.org"
OWNER = "owner@example.org/desk"


@dataclass
class Roster:
    """(owner bare, contact bare) → subscription and groups."""

    subscriptions: dict[tuple[str, str], str] = field(default_factory=dict)
    group_map: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def subscription(self, owner_bare: str, contact_bare: str) -> str:
        return self.subscriptions.get((owner_bare, contact_bare), "none")

    def groups(self, owner_bare: str, contact_bare: str) -> frozenset[str]:
        return self.group_map.get((owner_bare, contact_bare), frozenset())

    def presence_subscribers(self, owner_bare: str) -> Iterable[str]:
        return [
            c
            for (o, c), s in self.subscriptions.items()
            if o == owner_bare and s in ("from", "both")
        ]


@dataclass
class Presence:
    """Available resources and their show values."""

    shows: dict[str, str] = field(default_factory=dict)
    bound: set[str] = field(default_factory=set)
    """Full JIDs with a session that has not sent presence (or went unavailable)."""

    def available_resources(self, bare_jid: str) -> Mapping[str, str]:
        return {jid: show for jid, show in self.shows.items() if bare(jid) == bare_jid}

    def connected(self, full_jid: str) -> bool:
        return full_jid in self.bound or full_jid in self.shows


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    roster: Roster
    presence: Presence
    clock: Clock
    service: PubSubService


def make_world(config: ServiceConfig | None = None, service: str = SERVICE) -> World:
    roster, presence, clock = Roster(), Presence(), Clock()
    config = config or ServiceConfig(local_domains=frozenset({"example.org"}))
    svc = PubSubService(
        MemoryPubSubStore(),
        roster,
        presence,
        service=service,
        config=config,
        clock=clock,
        subscribers=roster,
    )
    return World(roster, presence, clock, svc)


@pytest.fixture
def world() -> World:
    return make_world()
