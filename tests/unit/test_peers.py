"""The interop tests' peer check: skip locally, fail when CI requires the peers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers import REQUIRE_ENV, require_peer  # noqa: E402

MISSING = "pubsubd-test-no-such-peer"


def test_missing_peer_skips_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_peer("sh", MISSING)


def test_missing_peer_fails_when_peers_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        require_peer(MISSING)


def test_present_peer_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    require_peer("sh")
