"""The backends every storage contract suite runs against, in one list: add a backend's name
to BACKENDS (and register it in ``pubsubd.storage.backends``) to run every suite on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
