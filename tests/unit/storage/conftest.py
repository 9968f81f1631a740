"""Fixtures of the storage contract suites: one run per backend of BACKENDS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsubd.storage.backends import Stores

from .backend_params import BACKENDS, Backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = Backend(request.param, tmp_path)
    yield opened
    opened.stores.close()


@pytest.fixture
def stores(backend: Backend) -> Stores:
    return backend.stores
