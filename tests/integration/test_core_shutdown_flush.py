"""A graceful shutdown writes what is queued for each client before its ``system-shutdown``
stream error (RFC 6120 §4.4, §4.9.3.20), and what XEP-0198 hands over stays handed over."""

from __future__ import annotations

from pathlib import Path

from harness import RawClient, ServerProcess

from .test_sm_exactly_once import offline_bodies, raw_resource
from .test_stream_management import _ack

ROOM = "farewell@conference.localhost"


def _join(raw: RawClient, nick: str) -> None:
    raw.send(f"<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/>"
             "</presence>")
    raw.read_until(b"code=\"110\"")  # its own presence: it is in the room


def test_shutdown_writes_queued_notices_and_hands_over_unacked_messages(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        server.add_user("plain")
        server.add_user("managed")
        plain, _ = raw_resource(server, "plain", "desk", None)
        managed, managed_jid = raw_resource(server, "managed", "phone", "")
        _join(plain, "plain")
        _join(managed, "managed")
        _ack(managed)  # what came so far is acknowledged; what follows is not
        plain.send(f"<message to='{managed_jid}' type='chat'><body>read but unacked</body>"
                   "</message>")
        managed.read_until(b"read but unacked</body>")

        assert server.stop() == 0
        # The MUC component queues its status-332 notices as the streams close: each stream
        # still writes them, then ends with the stream error (XEP-0045 §15.6).
        for raw in (plain, managed):
            tail = raw.read_all()
            assert "code=\"332\"" in tail, tail
            assert tail.index("code=\"332\"") < tail.index("system-shutdown"), tail
        # XEP-0198 §4 / RFC 6121 §8.5: the message the managed client never acknowledged
        # could not be resumed after a shutdown; it waits in offline storage, once.
        server.start()
        assert offline_bodies(server, "managed", "later") == ["read but unacked"]
    finally:
        if server.alive():
            server.kill()
