"""MotdStore contract, over every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsubd.storage.backends import Stores
from pubsubd.storage.interfaces import MotdStore

from .backend_params import BACKENDS, Backend, open_param


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = open_param(request, tmp_path)
    yield opened
    opened.stores.close()


def motd_of(stores: Stores) -> MotdStore:
    return stores.motd


async def test_set_replace_and_delete(backend: Backend) -> None:
    motd = motd_of(backend.stores)
    assert await motd.get() is None
    await motd.set("Welcome")
    await motd.set("Maintenance at 10:00 — ünïcode kept")
    assert await motd.get() == "Maintenance at 10:00 — ünïcode kept"
    await motd.set(None)
    assert await motd.get() is None
    await motd.set("")  # an empty message is still a message
    assert await motd.get() == ""


async def test_survives_reopening(backend: Backend) -> None:
    await motd_of(backend.stores).set("Hello")
    assert await motd_of(backend.reopen()).get() == "Hello"
