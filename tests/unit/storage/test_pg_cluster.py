"""The throw-away PostgreSQL cluster the postgres contract runs use."""

from __future__ import annotations

import psycopg
import pytest

from tests import pg
from tests.pg import Cluster


def test_each_database_is_fresh_and_separate(pg_cluster: Cluster) -> None:
    first, second = pg_cluster.new_database(), pg_cluster.new_database()
    assert first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE marker (x int)")
    with psycopg.connect(second) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'").fetchone()
        assert row == (0,)


def test_missing_postgresql_fails_in_ci_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg.glob, "glob", lambda _pattern: [])  # no /usr/lib/postgresql
    monkeypatch.setenv(pg.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="postgresql.*PUBSUBD_REQUIRE_PEERS"):
        pg.require_postgres()
    monkeypatch.delenv(pg.REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="peer not installed: postgresql"):
        pg.require_postgres()
