from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "feeds"


@pytest.fixture
def fixture_bytes() -> Callable[[str], bytes]:
    """Read a feed document from tests/fixtures/feeds."""
    return lambda name: (FIXTURES / name).read_bytes()
