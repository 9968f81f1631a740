"""``pubsubd admin`` against a running server through the control socket; and stopping it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import pytest
from harness import AuthenticationFailed, ServerProcess, connect, disconnect, run


@pytest.fixture(scope="module")
def srv(shared_server: ServerProcess) -> ServerProcess:
    shared_server.add_user("carol")
    shared_server.add_user("dave")
    return shared_server


def admin(srv: ServerProcess, *args: str) -> str:
    return srv.cli("admin", *args).stdout


def test_socket_is_private(srv: ServerProcess) -> None:
    mode = os.stat(srv.workdir / "var" / "control.sock").st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_users_table_and_json(srv: ServerProcess) -> None:
    table = admin(srv, "users").splitlines()
    assert table[0].split() == ["JID", "ENABLED", "ONLINE", "LAST_LOGIN"]
    assert any(line.startswith(f"carol@{srv.domain}") for line in table[1:])
    rows = json.loads(admin(srv, "users", "--json"))
    carol = next(r for r in rows if r["jid"] == f"carol@{srv.domain}")
    assert carol["enabled"] is True and carol["online"] == 0


def test_online_stats_announce_and_kick(srv: ServerProcess) -> None:
    jid = f"carol@{srv.domain}"

    async def scenario() -> None:
        carol = await connect(srv, jid)
        announced = asyncio.Event()
        carol.add_event_handler(
            "message", lambda m: m["body"] == "Back in five minutes" and announced.set())
        online = json.loads(admin(srv, "online", "--json"))
        assert [r for r in online if r["jid"].startswith(jid + "/") and r["available"]]
        stats = json.loads(admin(srv, "stats", "--json"))
        assert stats["online"] >= 1 and stats["registered"] >= 2
        assert "sent" in admin(srv, "announce", "Back", "in", "five", "minutes")
        await asyncio.wait_for(announced.wait(), 5)
        assert json.loads(admin(srv, "kick", jid, "--json")) == {"closed": 1}
        await asyncio.wait_for(carol.disconnected, 5)
        await disconnect(carol)

    run(scenario())


def test_disable_and_enable(srv: ServerProcess) -> None:
    jid = f"dave@{srv.domain}"
    admin(srv, "disable", jid)
    rows = json.loads(admin(srv, "users", "--json"))
    assert next(r for r in rows if r["jid"] == jid)["enabled"] is False

    async def refused() -> None:
        with pytest.raises(AuthenticationFailed):
            await connect(srv, jid, timeout=5)

    run(refused())
    admin(srv, "enable", jid)

    async def accepted() -> None:
        await disconnect(await connect(srv, jid))

    run(accepted())


def test_errors_are_one_line(srv: ServerProcess, tmp_path: Path) -> None:
    unknown = srv.cli("admin", "kick", "nobody@elsewhere.example", check=False)
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    bad_op = srv.cli("admin", "dance", check=False)
    assert bad_op.returncode == 1 and "unknown operation" in bad_op.stderr
    stopped = ServerProcess(tmp_path)  # configured, never started
    result = stopped.cli("admin", "users", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "pubsubd: the server is not running (no control socket at var/control.sock)")


def test_restart_then_shutdown(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    srv.start()
    try:
        jid = srv.add_user("erin")
        pid = srv.proc.pid if srv.proc else 0
        admin(srv, "motd", "Kept across restarts")
        srv.ports_path.unlink()
        assert "restart" in admin(srv, "restart")
        srv.await_ports(20)  # stopped, re-executed, serving again (on new ports)
        assert srv.log().count("pubsubd serving") == 2

        async def login() -> None:
            await disconnect(await connect(srv, jid))

        run(login())  # the same process came back and serves again
        assert srv.proc is not None and srv.proc.pid == pid and srv.alive()
        assert json.loads(admin(srv, "motd", "--json")) == {"motd": "Kept across restarts"}
        admin(srv, "shutdown")
        assert srv.proc.wait(15) == 0
        assert not (tmp_path / "var" / "control.sock").exists()
    finally:
        if srv.alive():
            srv.kill()



def test_online_marks_a_hibernated_session(srv: ServerProcess) -> None:
    """XEP-0198 §5: a session whose connection dropped is still bound, but not connected."""
    from harness import RawClient

    from .test_stream_management import _authenticate, _bind, _enable

    srv.add_user("sleeper")
    raw = RawClient(srv)
    _authenticate(raw, "sleeper")
    jid = _bind(raw, "phone")
    _enable(raw, " max='30'")

    def row() -> dict[str, object]:
        rows = json.loads(admin(srv, "online", "--json"))
        return next(r for r in rows if r["jid"] == jid)

    assert row()["state"] == "connected"
    raw.close()
    deadline = time.monotonic() + 10
    while (current := row())["state"] != "hibernated":  # each poll is a control round trip
        assert time.monotonic() < deadline, current
    assert current["address"] == ""
    assert "hibernated" in admin(srv, "online")
