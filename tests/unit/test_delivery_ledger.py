"""The per-account record behind the XEP-0198 §4 hand-over: who must hand a message over."""

from __future__ import annotations

import trio

from pubsubd.core.delivery_ledger import SETTLED_KEPT, DeliveryLedger, delivery_key
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.errors import StreamError
from pubsubd.jid import JID

ENTRY = (b"<message to='u@example.org' from='feeds@example.org' type='chat' id='e1'>"
         b"<body>x</body></message>")


def session(registry: SessionRegistry, resource: str, *, tracked: bool) -> Session:
    send, _ = trio.open_memory_channel[bytes](100)

    def close(_: StreamError) -> None:
        pass

    s = Session(JID.parse(f"u@example.org/{resource}"), send, close)
    registry.add(s)
    if tracked:
        registry.deliveries.start_tracking(s)
    return s


def copy_for(s: Session, data: bytes = ENTRY) -> bytes:
    """The copy a resource gets: addressed to it, otherwise the same."""
    return data.replace(b"to='u@example.org'", f"to='{s.jid}'".encode())


def test_key_ignores_the_address_and_skips_what_is_never_handed_over() -> None:
    to_resource = ENTRY.replace(b"u@example.org'", b"u@example.org/a'")
    assert delivery_key(ENTRY) == delivery_key(to_resource)
    assert delivery_key(ENTRY) != delivery_key(ENTRY.replace(b"<body>x", b"<body>y"))
    assert delivery_key(b"<message type='headline'><body>x</body></message>") is None
    assert delivery_key(b"<iq type='get' id='1'/>") is None
    assert delivery_key(b"<message><body>x</body></message>") is not None  # normal


def test_a_loss_waits_for_the_other_holder_and_is_dropped_once_it_acks() -> None:
    registry = SessionRegistry()
    ledger = registry.deliveries
    a, b = session(registry, "a", tracked=True), session(registry, "b", tracked=True)
    a.send(copy_for(a))
    b.send(copy_for(b))
    assert ledger.ended(a, [copy_for(a)]) == []  # b may still receive it
    ledger.acknowledged(b, copy_for(b))
    assert ledger.ended(b, []) == []
    assert len(ledger) == 0


def test_the_last_holder_hands_over_once_with_the_first_delivery_time() -> None:
    clock = iter([100.0, 200.0, 300.0, 400.0])
    registry = SessionRegistry()
    registry.deliveries = ledger = DeliveryLedger(lambda: next(clock))
    a, b = session(registry, "a", tracked=True), session(registry, "b", tracked=True)
    a.send(copy_for(a))
    b.send(copy_for(b))
    assert ledger.ended(a, [copy_for(a)]) == []
    assert ledger.ended(b, [copy_for(b)]) == [(copy_for(b), 100.0)]


def test_a_resource_without_stream_management_received_it() -> None:
    registry = SessionRegistry()
    ledger = registry.deliveries
    plain = session(registry, "plain", tracked=False)
    tracked = session(registry, "sm", tracked=True)
    plain.send(copy_for(plain))  # queued first: the fan-out order does not matter
    tracked.send(copy_for(tracked))
    assert ledger.ended(tracked, [copy_for(tracked)]) == []


def test_a_message_only_one_resource_got_is_handed_over() -> None:
    registry = SessionRegistry()
    a = session(registry, "a", tracked=True)
    session(registry, "b", tracked=True)
    a.send(copy_for(a))
    assert [data for data, _ in registry.deliveries.ended(a, [copy_for(a)])] == [copy_for(a)]


def test_accounts_without_stream_management_are_not_recorded() -> None:
    registry = SessionRegistry()
    plain = session(registry, "plain", tracked=False)
    plain.send(copy_for(plain))
    assert not registry.deliveries.watching(plain.jid.bare)
    assert len(registry.deliveries) == 0


def test_settled_deliveries_are_bounded() -> None:
    registry = SessionRegistry()
    ledger = registry.deliveries
    plain = session(registry, "plain", tracked=False)
    tracked = session(registry, "sm", tracked=True)
    for n in range(SETTLED_KEPT * 2):
        plain.send(copy_for(plain, ENTRY.replace(b"id='e1'", f"id='e{n}'".encode())))
    assert len(ledger) <= SETTLED_KEPT
    assert ledger.ended(tracked, []) == []
    assert len(ledger) == 0
