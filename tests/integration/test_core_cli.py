"""The command line: account management and config checking, as an operator runs them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from harness import RawClient, ServerProcess


def test_user_add_list_passwd_delete(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)  # config and data directory only; not started yet
    assert "created alice@localhost" in server.cli("user", "add", "alice@localhost",
                                                   "--password", "pass-one").stdout
    again = server.cli("user", "add", "alice@localhost", "--password", "x", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    # The password can come from stdin, so it never shows in the process list.
    server.cli("user", "add", "bob@localhost", input_="pass-two\n")
    listed = server.cli("user", "list").stdout.split()
    assert listed == ["alice@localhost", "bob@localhost"]
    as_json = json.loads(server.cli("user", "list", "--json").stdout)
    assert {entry["jid"] for entry in as_json} == {"alice@localhost", "bob@localhost"}
    assert "password changed" in server.cli("user", "passwd", "alice@localhost",
                                            "--password", "pass-three").stdout
    assert "deleted bob@localhost" in server.cli("user", "delete", "bob@localhost").stdout
    missing = server.cli("user", "delete", "bob@localhost", check=False)
    assert missing.returncode == 1 and "no such user" in missing.stderr
    foreign = server.cli("user", "add", "eve@elsewhere.example", "--password", "x", check=False)
    assert foreign.returncode == 2 and "not a user of a served domain" in foreign.stderr
    assert server.cli("user", "list").stdout.split() == ["alice@localhost"]
    # Passwords are stored as SCRAM keys only.
    assert b"pass-three" not in (tmp_path / "var" / "pubsubd.sqlite3").read_bytes()

    server.start()
    try:
        client = RawClient(server)
        assert client.login("alice", "pass-three") == "alice@localhost/raw"
        client.close()
    finally:
        server.kill()


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"domains": ["localhost"], "colour": "blue"}, "colour"),
        ({"limits": {"max_stanza_bytes": "big"}}, "limits.max_stanza_bytes"),
        ({"listeners": [{"kind": "c2s", "address": "not-an-ip", "port": 5222}]},
         "listeners[0].address"),
        ({"tls": {"certificate": "/nonexistent/cert.pem", "key": "/nonexistent/key.pem"}},
         "tls.certificate"),
        ("domains: [unclosed", "YAML"),
    ],
    ids=["unknown-key", "wrong-type", "listener-address", "missing-cert", "yaml-syntax"],
)
def test_check_config_names_the_key(tmp_path: Path, config: object, key: str) -> None:
    import subprocess

    path = write(tmp_path, config)
    result = subprocess.run([sys.executable, "-m", "pubsubd", "check-config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    result = server.cli("check-config", str(server.config_path))
    assert "OK" in result.stdout
