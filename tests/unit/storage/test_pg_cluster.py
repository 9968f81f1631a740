"""The throw-away PostgreSQL cluster the postgres contract runs use."""

from __future__ import annotations

import psycopg

from tests.pg import Cluster


def test_each_database_is_fresh_and_separate(pg_cluster: Cluster) -> None:
    first, second = pg_cluster.new_database(), pg_cluster.new_database()
    assert first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE marker (x int)")
    with psycopg.connect(second) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'").fetchone()
        assert row == (0,)
