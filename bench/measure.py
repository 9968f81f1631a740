"""Result records and the small statistics the report needs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.servers import ServerUnderTest


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure of a scenario; ``higher_is_better`` orients the pubsubd/Prosody ratio."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = True


@dataclass
class ScenarioResult:
    scenario: str
    server: str
    values: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    profile: list[str] = field(default_factory=list)
    """Summary of a py-spy profile of the server during the scenario (pubsubd only)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The server process at one instant: wall clock, CPU seconds, resident KiB."""

    wall: float
    cpu: float
    rss: int

    @classmethod
    def of(cls, server: ServerUnderTest) -> Snapshot:
        return cls(time.monotonic(), server.cpu(), server.rss())


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def ratio(value: float | None, divisor: float | None) -> float | None:
    if value is None or not divisor:
        return None
    return value / divisor
