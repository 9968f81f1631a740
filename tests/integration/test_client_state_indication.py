"""Client State Indication (XEP-0352): what reaches an inactive client during a storm.

Bob sends alice presence updates, headlines and, last, a chat message. While alice is
inactive only the chat message reaches her; when she is active again she gets the latest
presence alone and every headline. Bob's stanzas are routed in order, so the chat message
arriving means everything before it has passed the server's filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RawClient, ServerProcess

CSI = "urn:xmpp:csi:0"
UPDATES = 5
HEADLINES = 3


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("csi")
    proc = ServerProcess(tmp)
    proc.start()
    for user in ("alice", "bob"):
        proc.add_user(user)
    try:
        yield proc
    finally:
        proc.stop()


def storm(bob: RawClient, to: str) -> None:
    for n in range(UPDATES):
        bob.send(f"<presence to='{to}'><status>update {n}</status></presence>")
    for n in range(HEADLINES):
        bob.send(f"<message type='headline' to='{to}'><body>headline {n}</body></message>")
    bob.send(f"<message type='chat' to='{to}'><body>urgent</body></message>")


def synced(client: RawClient, iq_id: str) -> str:
    """Everything the server sent before answering a ping (so it has read what came before)."""
    client.send(f"<iq type='get' id='{iq_id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    return client.read_until(iq_id.encode()) + client.read_until(b">")


def test_csi_is_offered(srv: ServerProcess) -> None:
    client = RawClient(srv)
    client.open()
    client.starttls()
    client.open()
    import base64
    token = base64.b64encode(b"\0alice\0password1").decode()
    client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    client.read_until(b"<success")
    assert f"<csi xmlns=\"{CSI}\"/>" in client.open().replace("'", '"')  # XEP-0352 §3
    client.close()


def test_inactive_client_gets_only_chat_until_active(srv: ServerProcess) -> None:
    alice = RawClient(srv)
    jid = alice.login("alice", resource="phone")
    bob = RawClient(srv)
    bob.login("bob")

    storm(bob, jid)  # active: everything arrives
    active = alice.read_until(b"urgent</body>")
    assert active.count("<presence") == UPDATES and active.count("headline ") == HEADLINES

    alice.send(f"<inactive xmlns='{CSI}'/>")
    synced(alice, "s1")
    storm(bob, jid)
    inactive = alice.read_until(b"urgent</body>")
    assert "<presence" not in inactive and "headline" not in inactive
    assert len(inactive.encode()) < len(active.encode()) / 3

    alice.send(f"<active xmlns='{CSI}'/>")
    released = alice.read_until(f"headline {HEADLINES - 1}</body>".encode())
    assert released.count("<presence") == 1  # only the latest update of bob's presence
    assert f"update {UPDATES - 1}" in released
    assert released.count("headline ") == HEADLINES
    alice.close()
    bob.close()
