"""Backends every storage contract runs against; add a name to BACKENDS to cover a new one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pubsubd.storage.backends import Stores, open_backend

BACKENDS = ["memory", "sqlite"]


@dataclass(frozen=True, slots=True)
class Settings:
    backend: str
    path: str


class Backend:
    """Opens the stores of one backend, and opens them again as a restarted server would."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name = name
        self.settings = Settings(name, "var/stores.sqlite3")
        self.base_dir = base_dir
        self.stores = open_backend(self.settings, base_dir)

    def reopen(self) -> Stores:
        """Close and reopen. An in-memory backend keeps its stores: it only promises to keep
        data for the life of the process, which this stands for."""
        if self.name != "memory":
            self.stores.close()
            self.stores = open_backend(self.settings, self.base_dir)
        return self.stores


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = Backend(request.param, tmp_path)
    yield opened
    opened.stores.close()


@pytest.fixture
def stores(backend: Backend) -> Stores:
    return backend.stores
