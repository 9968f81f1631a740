"""The XEP-0352 filter of a client's outgoing stanzas, without a connection."""

from __future__ import annotations

from pubsubd.stream.client_state import MAX_HELD, ClientState, Deferrable

CHAT = b"<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
HEADLINE = b"<message xmlns='jabber:client' type='headline'><body>news</body></message>"
EVENT = (b"<message xmlns='jabber:client'><event xmlns='http://jabber.org/protocol/pubsub#event'>"
         b"<items node='n'/></event></message>")
IQ = b"<iq xmlns='jabber:client' type='result' id='1'/>"
SUBSCRIBE = b"<presence xmlns='jabber:client' from='b@x' type='subscribe'/>"


def presence(sender: str, status: str) -> bytes:
    return (f"<presence xmlns='jabber:client' from='{sender}'><status>{status}</status>"
            "</presence>").encode()


def test_active_client_gets_everything_at_once() -> None:
    state = ClientState()
    batch = [presence("b@x/1", "a"), HEADLINE, EVENT, CHAT]
    assert state.outgoing(batch) == batch


def test_inactive_client_gets_chat_iq_and_subscription_requests_only() -> None:
    state = ClientState()
    state.deactivate()
    sent = state.outgoing([presence("b@x/1", "a"), HEADLINE, EVENT, CHAT, IQ, SUBSCRIBE])
    assert sent == [CHAT, IQ, SUBSCRIBE]
    assert state.held == 3


def test_activation_releases_in_order_with_only_the_latest_presence_per_contact() -> None:
    state = ClientState()
    state.deactivate()
    state.outgoing([presence("b@x/1", "old"), HEADLINE, presence("c@x/1", "c"),
                    presence("b@x/1", "new")])
    assert state.activate() == [HEADLINE, presence("c@x/1", "c"), presence("b@x/1", "new")]
    assert state.outgoing([EVENT]) == [EVENT]


def test_too_much_held_is_flushed() -> None:
    state = ClientState()
    state.deactivate()
    for _ in range(MAX_HELD):
        assert state.outgoing([EVENT]) == []
    assert state.outgoing([EVENT]) == [EVENT] * (MAX_HELD + 1)
    assert state.held == 0


def test_a_deferrable_chat_message_waits_and_keeps_its_place() -> None:
    state = ClientState()
    state.deactivate()
    entry = Deferrable(b"<message type='chat' from='news@pubsub.x'><body>e</body></message>")
    person = b"<message type='chat' from='bob@localhost'><body>hi</body></message>"
    headline = b"<message type='headline'><body>h</body></message>"
    assert state.outgoing([headline, entry, person]) == [person]
    assert state.activate() == [headline, entry]
    assert state.outgoing([entry]) == [entry]  # an active client gets it at once
