"""Scenario sizes; the defaults finish the whole run against both servers in a few minutes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Options:
    workers: int = 2  # load generator processes (one per core)
    spread: int = 4  # client source addresses 127.0.0.2 .. 127.0.0.(1+spread)
    # (a) 1:1 messages
    pairs: int = 50  # online sender/receiver pairs
    window: int = 4  # messages in flight per pair (closed loop)
    duration: float = 10.0  # seconds of sending
    latency_messages: int = 2000  # unloaded round trips for the idle-latency figure
    # (b) idle connections
    idle: int = 10_000
    idle_accounts: int = 100  # idle connections are spread over this many accounts
    hold: float = 10.0  # seconds the idle connections are held before they are pinged
    # (c) logins
    login_duration: float = 10.0
    login_concurrency: int = 16  # concurrent login loops per worker
    # presence broadcast
    contacts: int = 1000
    presence_rounds: int = 20
    # pubsub fan-out
    subscribers: int = 1000
    items: int = 100
