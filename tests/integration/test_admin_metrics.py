"""The metrics listener: Prometheus text that parses and moves with traffic, and /health."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness import AuthenticationFailed, ServerProcess, connect, disconnect, run
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("metrics"))
    proc.config["listeners"].append(
        {"kind": "metrics", "address": "127.0.0.1", "port": proc.metrics_port})
    proc.config_path.write_text(yaml.safe_dump(proc.config))
    proc.start()
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


def get(srv: ServerProcess, path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.metrics_port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read().decode()
    finally:
        conn.close()


def samples(srv: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, ctype, body = get(srv, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(data: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return data.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_traffic(srv: ServerProcess) -> None:
    jid = srv.add_user("pinger")
    before = samples(srv)

    async def scenario() -> None:
        client = await connect(srv, jid)
        for _ in range(3):
            await client.plugin["xep_0199"].ping(srv.domain, timeout=5)
        during = samples(srv)
        assert value(during, "pubsubd_sessions_online") == 1
        assert value(during, "pubsubd_connections", kind="c2s") == 1
        # Each listener kind counts its own connections, not the per-IP total they share.
        assert value(during, "pubsubd_connections", kind="c2s_tls") == 0
        with pytest.raises(AuthenticationFailed):
            await connect(srv, jid, "wrong-password", timeout=5)
        await disconnect(client)

    run(scenario())
    after = samples(srv)
    iq_in = value(after, "pubsubd_stanzas_in_total", kind="iq")
    assert iq_in - value(before, "pubsubd_stanzas_in_total", kind="iq") >= 3
    assert value(after, "pubsubd_stanzas_in_total", kind="presence") >= 1
    assert value(after, "pubsubd_stanzas_out_total", kind="iq") >= 3
    assert value(after, "pubsubd_auth_failures_total") >= 1
    assert ("pubsubd_storage_latency_seconds_count", ()) in after
    assert ("pubsubd_event_loop_lag_seconds", ()) in after
    # Exported from the start (as zeros) for the pubsub side to move.
    assert ("pubsubd_notifications_total", (("outcome", "held"),)) in after


def test_health_and_unknown_paths(srv: ServerProcess) -> None:
    status, ctype, body = get(srv, "/health")
    report = json.loads(body)
    assert status == 200 and ctype == "application/json" and report["status"] == "ok"
    assert report["storage_latency"] is not None
    assert get(srv, "/nothing")[0] == 404


def test_metrics_listener_is_loopback_by_default() -> None:
    from pubsubd.config import Listener

    assert Listener(kind="metrics").address == "127.0.0.1"


def test_disabled_metrics_serve_nothing(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, extra={"metrics": {"enabled": False}})
    proc.config["listeners"].append(
        {"kind": "metrics", "address": "127.0.0.1", "port": proc.metrics_port})
    proc.config_path.write_text(yaml.safe_dump(proc.config))
    proc.start()
    try:
        assert "metrics" not in proc.ports  # the listener never opened
    finally:
        proc.kill()
