"""Real peers (Prosody, Profanity, tmux...) that interop tests run against.

Locally a missing peer skips its tests with a visible reason (``pytest -rs``). In CI
(``PUBSUBD_REQUIRE_PEERS=1``, set by ``make test``) it fails them: a green run must have run them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

REQUIRE_ENV = "PUBSUBD_REQUIRE_PEERS"


def peers_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def require_peer(*commands: str) -> None:
    """Skip (or, when peers are required, fail) unless every command is on the PATH."""
    missing = [command for command in commands if shutil.which(command) is None]
    if not missing:
        return
    reason = f"peer not installed: {', '.join(missing)} (Debian packages; `make debian-deps`)"
    if peers_required():
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set", pytrace=False)
    pytest.skip(reason)


def needs_peers(*commands: str) -> Callable[[], None]:
    """An autouse, module-scoped fixture requiring ``commands``: assign it to a module global.

    Module scope makes it run before the module's other module-scoped fixtures (which start
    the peers)."""

    @pytest.fixture(scope="module", autouse=True)
    def required_peers() -> None:
        require_peer(*commands)

    return required_peers  # type: ignore[no-any-return]
