"""The BOSH session rules (XEP-0124), without sockets or clocks: time is a number here."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd.stream.bosh import (
    BOSH_NS,
    BoshError,
    BoshLimits,
    BoshRequest,
    BoshSession,
    parse_request,
)

LIMITS = BoshLimits(max_wait=60, max_hold=1, inactivity=30, polling=2, max_requests=2)


def request(rid: int, payloads: tuple[bytes, ...] = (), **kw: object) -> BoshRequest:
    return BoshRequest(rid=rid, sid="s", payloads=payloads, **kw)  # type: ignore[arg-type]


def created(hold: int = 1, wait: int = 10) -> BoshSession:
    """A session whose creation request (rid 100) has been answered with the features."""
    session = BoshSession("s", request(100, wait=wait, hold=hold), LIMITS, now=0.0)
    first = session.receive(request(100, wait=wait, hold=hold), 0.0)
    session.push(["<stream:features/>"])
    session.advance(0.0)
    assert b"stream:features" in session.responses.pop(first.ticket)
    return session


def test_parse_request_reads_attributes_and_payloads() -> None:
    data = (f"<body xmlns='{BOSH_NS}' xmlns:xmpp='urn:xmpp:xbosh' rid='7' sid='abc' "
            "xmpp:restart='true' ack='6'><message xmlns='jabber:client'/>"
            "<iq xmlns='jabber:client' id='x'/></body>").encode()
    parsed = parse_request(data)
    assert (parsed.rid, parsed.sid, parsed.restart, parsed.ack) == (7, "abc", True, 6)
    assert [etree.fromstring(p).get("id") for p in parsed.payloads] == [None, "x"]


@pytest.mark.parametrize("data", [b"<body/>", f"<body xmlns='{BOSH_NS}'/>".encode(), b"<x",
                                  f"<body xmlns='{BOSH_NS}' rid='-1'/>".encode()])
def test_parse_request_refuses_what_is_not_a_request(data: bytes) -> None:
    with pytest.raises(BoshError) as err:
        parse_request(data)
    assert err.value.condition == "bad-request"


def test_creation_response_waits_for_output_and_carries_the_session_attributes() -> None:
    session = BoshSession("s", request(1, wait=10, hold=1), LIMITS, now=0.0)
    ticket = session.receive(request(1), 0.0).ticket
    session.advance(1.0)
    assert ticket not in session.responses  # nothing to say yet
    session.stream_from, session.stream_id = "localhost", "id1"
    session.push(["<stream:features/>"])
    session.advance(1.0)
    response = etree.fromstring(session.responses[ticket])
    assert response.get("sid") == "s" and response.get("authid") == "id1"
    assert response.get("requests") == "2" and response.get("wait") == "10"


def test_held_request_is_answered_empty_after_wait() -> None:
    session = created(wait=10)
    ticket = session.receive(request(101), 1.0).ticket
    session.advance(5.0)
    assert ticket not in session.responses
    assert session.next_deadline() == 11.0
    session.advance(11.0)
    assert len(etree.fromstring(session.responses[ticket])) == 0


def test_a_request_over_hold_releases_the_oldest() -> None:
    session = created()
    older = session.receive(request(101), 1.0).ticket
    newer = session.receive(request(102), 2.0).ticket
    session.advance(2.0)
    assert older in session.responses and newer not in session.responses


def test_repeated_rid_gets_the_buffered_response() -> None:
    session = created()
    ticket = session.receive(request(101, (b"<iq/>",)), 1.0).ticket
    session.push(["<iq type='result'/>"])
    session.advance(1.0)
    original = session.responses.pop(ticket)
    again = session.receive(request(101, (b"<iq/>",)), 2.0)
    assert again.in_order == []  # the payload is not passed on twice
    assert session.responses[again.ticket] == original


def test_rid_no_longer_buffered_ends_the_session() -> None:
    session = created()
    for rid in (101, 102, 103):
        session.receive(request(rid), float(rid))
        session.push(["<x/>"])
        session.advance(float(rid))
    with pytest.raises(BoshError) as err:
        session.receive(request(100), 200.0)
    assert err.value.condition == "item-not-found"
    assert session.ended is not None and b"item-not-found" in session.ended


def test_out_of_order_requests_are_passed_on_in_rid_order() -> None:
    session = created()
    later = session.receive(request(102, (b"<b/>",)), 1.0)
    assert later.in_order == []
    earlier = session.receive(request(101, (b"<a/>",)), 1.0)
    assert [r.rid for r in earlier.in_order] == [101, 102]


def test_too_many_unanswered_requests_is_a_policy_violation() -> None:
    session = created()
    session.receive(request(102), 1.0)
    session.receive(request(103), 1.0)
    with pytest.raises(BoshError) as err:
        session.receive(request(104), 1.0)
    assert err.value.condition == "policy-violation"


def test_terminate_may_exceed_the_request_limit() -> None:
    session = created()
    session.receive(request(102), 1.0)
    session.receive(request(103), 1.0)
    accepted = session.receive(request(101, type="terminate"), 1.0)
    assert [r.rid for r in accepted.in_order] == [101, 102, 103]


def test_polling_faster_than_allowed_is_a_policy_violation() -> None:
    session = created(hold=0, wait=0)
    session.receive(request(101), 10.0)
    session.advance(10.0)  # answered at once, empty
    with pytest.raises(BoshError) as err:
        session.receive(request(102), 11.0)
    assert err.value.condition == "policy-violation"


def test_polling_at_the_allowed_interval_is_fine() -> None:
    session = created(hold=0, wait=0)
    session.receive(request(101), 10.0)
    session.advance(10.0)
    session.receive(request(102), 12.5)


def test_no_request_for_inactivity_seconds_ends_the_session() -> None:
    session = created()
    assert session.next_deadline() == 30.0
    session.advance(29.0)
    assert session.ended is None
    session.advance(30.0)
    assert session.ended is not None


def test_end_answers_every_waiting_request_with_terminate() -> None:
    session = created()
    ticket = session.receive(request(101), 1.0).ticket
    session.push(["<message/>"])
    session.end("remote-stream-error", ("<stream:error/>",))
    response = etree.fromstring(session.responses[ticket])
    assert response.get("type") == "terminate" and len(response) == 2
