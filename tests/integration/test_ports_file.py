"""Listeners on port 0 bind ephemeral ports, and ``pubsubd run --ports-file`` reports them once
every listener accepts: what lets tests (and supervisors) run servers without racing for ports."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from harness import RawClient, ServerProcess


def test_ports_file_names_every_listener_and_a_restart_keeps_them(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    assert [spec["port"] for spec in server.config["listeners"]] == [0, 0]
    server.start()
    try:
        ports = json.loads(server.ports_path.read_text())
        assert ports["c2s"] == ports["c2s:0"] and ports["c2s_tls"] == ports["c2s_tls:1"]
        assert 0 not in ports.values() and ports["c2s"] != ports["c2s_tls"]
        for port in (ports["c2s"], ports["c2s_tls"]):  # every listener accepts already
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        server.restart(hard=True)  # clients reconnect where they were
        assert json.loads(server.ports_path.read_text()) == ports
        client = RawClient(server)
        assert "<stream:features" in client.open()
        client.close()
    finally:
        if server.alive():
            server.kill()
