"""Fixtures of the storage contract suites: one run per backend of BACKENDS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsubd.storage.backends import Stores

from .backend_params import BACKENDS, Backend, open_param


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = open_param(request, tmp_path)
    yield opened
    opened.stores.close()


@pytest.fixture
def stores(backend: Backend) -> Stores:
    return backend.stores
