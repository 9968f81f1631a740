from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ServerProcess  # noqa: E402

from tests.pg import pg_cluster, pg_url  # noqa: E402, F401  (fixtures for every suite)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server with in-band registration on, for one test."""
    proc = ServerProcess(tmp_path)
    proc.start()
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a whole test module (tests must use distinct accounts)."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"))
    proc.start()
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()
