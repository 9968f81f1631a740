"""Versioned schemas on PostgreSQL: each store lists its SQL steps, numbered from 1.

A ``schema_versions`` row per store records the last step applied. Steps run in one
transaction under an advisory lock, so several servers starting against one database apply
each step once. A database whose version is newer than the steps this code knows was written
by a newer pubsubd: starting would misread it, so :class:`SchemaTooNew` stops the server.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from pubsubd.storage.sqlite import SchemaTooNew  # one exception for both backends

__all__ = ["SchemaTooNew", "Steps", "current_version", "migrate"]

Steps = Sequence[str]

_LOCK = 0x70756273  # "pubs": the advisory lock every migrating process takes




def current_version(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("SELECT version FROM schema_versions WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection, name: str, steps: Steps) -> int:
    """Apply the steps of ``name`` not applied yet; returns the version reached."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
    conn.execute("CREATE TABLE IF NOT EXISTS schema_versions"
                 " (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    current = current_version(conn, name)
    if current > len(steps):
        raise SchemaTooNew(
            f"storage: the {name!r} tables are at schema version {current}, but this pubsubd"
            f" knows versions up to {len(steps)}; run the newer pubsubd (or restore a backup)")
    for version, script in enumerate(steps, start=1):
        if version > current:
            conn.execute(script.encode())  # no parameters: several statements are allowed
    if len(steps) > current:
        conn.execute(
            "INSERT INTO schema_versions (name, version) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET version = excluded.version", (name, len(steps)))
    return max(current, len(steps))
