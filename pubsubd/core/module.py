"""The base of every protocol module: one module per RFC section or XEP.

A module registers IQ handlers and hooks in :meth:`setup`, adds its disco features, and may run
background tasks in :meth:`run`. Its constructor takes, as typed arguments, exactly what it may
touch; the composition root (``pubsubd/composition.py``) builds it.
"""

from __future__ import annotations

import logging
from typing import ClassVar


class Module:
    name: ClassVar[str] = "module"
    # XEP-0030 features the server advertises because this module is loaded.
    features: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.log = logging.getLogger(f"pubsubd.modules.{self.name}")

    def setup(self) -> None:
        """Register handlers and hooks (synchronous; runs before listeners open)."""

    async def run(self) -> None:
        """Background work for the server's lifetime (optional)."""

    async def closing(self) -> None:
        """The server is shutting down and its streams are still open: the last moment to tell
        peers (optional)."""

    async def stop(self) -> None:
        """Flush state on graceful shutdown (optional)."""
