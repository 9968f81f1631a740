"""``pubsubd storage migrate|export|import`` and ``pubsubd user`` on the configured backend."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pubsubd.cli import main


def config(tmp_path: Path, storage: str) -> str:
    path = tmp_path / "pubsubd.yaml"
    path.write_text(f"domains: [example.org]\nstorage: {storage}\n")
    return str(path)


def test_user_add_writes_to_postgresql_when_configured(pg_url: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, f"{{url: '{pg_url}'}}")
    assert main(["user", "add", "alice@example.org", "--password", "pw", "--config", cfg]) == 0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT username FROM accounts").fetchall() == [("alice",)]
    assert not list(tmp_path.glob("**/*.sqlite3"))


def test_export_from_sqlite_then_import_into_postgresql(pg_url: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, "{path: var/old.sqlite3}")
    assert main(["storage", "migrate", "--config", cfg]) == 0
    assert main(["user", "add", "alice@example.org", "--password", "pw", "--config", cfg]) == 0
    assert main(["storage", "export", "dump.jsonl", "--config", cfg]) == 0
    assert main(["storage", "import", "dump.jsonl", "--url", pg_url, "--config", cfg]) == 0
    assert "imported" in capsys.readouterr().err
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT username FROM accounts").fetchall() == [("alice",)]
    # A second import would mix two servers' data: refused, nothing changed.
    assert main(["storage", "import", "dump.jsonl", "--url", pg_url, "--config", cfg]) == 1
    assert "already holds data" in capsys.readouterr().err
