"""Real client programs a test needs: skip without them locally, fail without them in CI.

``make test`` installs every client and sets ``PUBSUBD_REQUIRE_PEERS=1``: there a missing
client fails its test, since a green run must have run it.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "PUBSUBD_REQUIRE_PEERS"


def require_peer(*programs: str) -> None:
    """Skip (or, when peers are required, fail) unless every program is on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    reason = (f"not installed: {', '.join(missing)} (Debian packages; `make debian-deps` "
              "installs them)")
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set", pytrace=False)
    pytest.skip(reason)
