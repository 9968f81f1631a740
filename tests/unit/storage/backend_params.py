"""The backends every storage contract suite runs against, in one list: add a backend's name
to BACKENDS (and register it in ``pubsubd.storage.backends``) to run every suite on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pubsubd.storage.backends import Stores, open_backend

BACKENDS = ["memory", "sqlite", "postgres"]


@dataclass(frozen=True, slots=True)
class Settings:
    backend: str
    path: str
    url: str = ""
    pool_size: int = 4


class Backend:
    """Opens the stores of one backend, and opens them again as a restarted server would.

    PostgreSQL needs ``url``, a fresh database (the ``pg_url`` fixture of ``tests/pg.py``);
    :func:`open_param` gets one when the parameter asks for it."""

    def __init__(self, name: str, base_dir: Path, url: str = "") -> None:
        self.name = name
        self.settings = Settings(name, "var/stores.sqlite3", url)
        self.base_dir = base_dir
        self.stores = open_backend(self.settings, base_dir)

    def reopen(self) -> Stores:
        """Close and reopen. An in-memory backend keeps its stores: it only promises to keep
        data for the life of the process, which this stands for."""
        if self.name != "memory":
            self.stores.close()
            self.stores = open_backend(self.settings, self.base_dir)
        return self.stores


def open_param(request: pytest.FixtureRequest, base_dir: Path) -> Backend:
    """The backend named by ``request.param``, on a fresh PostgreSQL database if it is
    ``postgres`` (the session's throw-away cluster starts on first use)."""
    name = str(request.param)
    url = request.getfixturevalue("pg_url") if name == "postgres" else ""
    return Backend(name, base_dir, url)
