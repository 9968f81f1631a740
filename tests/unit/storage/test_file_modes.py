"""The database holds SCRAM keys: it and its WAL are readable by the server's account only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pubsubd.storage.sqlite import Database


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(db: Database) -> None:
    db.run_sync(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t (x)"))
    db.run_sync(lambda c: c.execute("INSERT INTO t VALUES (1)"))


def test_database_and_wal_are_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "var" / "pubsubd.sqlite3"
        db = Database(path)
        _write(db)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(f.exists() for f in files)
        assert [_mode(f) for f in files] == [0o600] * 3
    finally:
        os.umask(old)


def test_an_existing_open_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "pubsubd.sqlite3"
    path.touch()
    path.chmod(0o644)
    _write(Database(path))
    assert _mode(path) == 0o600
