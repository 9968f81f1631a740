"""The feeds benchmark's WebSub measurement works end to end: its local hub verifies pubsubd's
subscription, each pushed entry reaches the subscribed client as a notification, and the feed is
not polled meanwhile. Only the counts are checked; the latencies are the benchmark's business."""

from __future__ import annotations

from pathlib import Path

from bench.websub_push import run_standalone


def test_every_pushed_entry_is_timed_once(tmp_path: Path) -> None:
    push = run_standalone(tmp_path / "websub", pushes=3)
    assert len(push.latencies) == 3
    assert all(latency > 0 for latency in push.latencies)
