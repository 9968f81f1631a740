"""Persistence: narrow per-feature store protocols (:mod:`.interfaces`) over one backend.

:func:`open_stores` is the one place stores are built (the backend is chosen from
``storage.backend`` in :mod:`.backends`); the composition root hands each module the store it
needs.
"""

from __future__ import annotations

from pathlib import Path

from pubsubd.config import Config
from pubsubd.storage.backends import Stores, open_backend

__all__ = ["Stores", "open_stores"]


def open_stores(config: Config, base_dir: Path) -> Stores:
    """Open the configured backend (relative paths resolved against ``base_dir``)."""
    return open_backend(config.storage, base_dir, scram_iterations=config.auth.scram_iterations)
