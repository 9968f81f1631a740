"""XEP-0198 bookkeeping without sockets: counters, wrap-around, the unacked queue, errors."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd import ns
from pubsubd.stream.stream_management import (
    MODULUS,
    HandledCountError,
    HandledCountTooHigh,
    StreamManagement,
    failed,
    is_stanza,
    new_sm_id,
    parse_h,
)


def _msg(n: int) -> bytes:
    return f"<message xmlns='jabber:client' id='m{n}'><body>{n}</body></message>".encode()


def test_inbound_counter_answers_requests() -> None:
    sm = StreamManagement(max_unacked=10)
    assert etree.fromstring(sm.ack()).get("h") == "0"
    for _ in range(3):
        sm.stanza_received()
    ack = etree.fromstring(sm.ack())
    assert ack.tag == ns.clark(ns.SM, "a") and ack.get("h") == "3"


def test_inbound_counter_wraps_to_zero() -> None:
    sm = StreamManagement(max_unacked=10)
    sm.inbound = MODULUS - 1
    sm.stanza_received()
    assert sm.inbound == 0


def test_ack_releases_only_what_it_covers() -> None:
    sm = StreamManagement(max_unacked=10)
    for n in range(4):
        sm.stanza_sent(_msg(n))
    assert sm.acknowledged(2) == 2
    assert list(sm.unacked) == [_msg(2), _msg(3)]
    assert sm.acknowledged(2) == 0  # a repeated ack releases nothing
    assert sm.acknowledged(4) == 2
    assert not sm.unacked


def test_ack_across_wrap_around() -> None:
    sm = StreamManagement(max_unacked=10)
    sm.outbound = sm.acked = MODULUS - 2
    for n in range(4):
        sm.stanza_sent(_msg(n))
    assert sm.outbound == 2
    assert sm.acknowledged(1) == 3  # 2^32-2 + 3 wraps to 1
    assert list(sm.unacked) == [_msg(3)]


def test_handled_count_too_high() -> None:
    sm = StreamManagement(max_unacked=10)
    sm.stanza_sent(_msg(1))
    with pytest.raises(HandledCountTooHigh) as caught:
        sm.acknowledged(2)
    assert (caught.value.h, caught.value.send_count) == (2, 1)
    assert len(sm.unacked) == 1  # nothing released by a bad ack
    error = etree.fromstring(
        b"<w xmlns:stream='http://etherx.jabber.org/streams'>"
        + HandledCountError(caught.value).to_bytes() + b"</w>"
    )[0]
    assert error[0].tag == ns.clark(ns.STREAMS_ERR, "undefined-condition")
    app = error.find(ns.clark(ns.SM, "handled-count-too-high"))
    assert app is not None and app.get("h") == "2" and app.get("send-count") == "1"


def test_requests_an_ack_every_few_stanzas() -> None:
    sm = StreamManagement(max_unacked=100, request_every=3)
    asks = [sm.stanza_sent(_msg(n)) for n in range(7)]
    assert asks == [False, False, True, False, False, True, False]
    assert etree.fromstring(sm.request()).tag == ns.clark(ns.SM, "r")


def test_unacked_queue_is_bounded() -> None:
    sm = StreamManagement(max_unacked=2)
    sm.stanza_sent(_msg(1))
    sm.stanza_sent(_msg(2))
    assert not sm.overflowing
    sm.stanza_sent(_msg(3))
    assert sm.overflowing
    sm.acknowledged(1)
    assert not sm.overflowing


def test_enabled_offers_resumption_only_with_an_id() -> None:
    plain = etree.fromstring(StreamManagement(max_unacked=1).enabled(300))
    assert plain.get("resume") is None and plain.get("id") is None
    sm_id = new_sm_id()
    assert len(sm_id) >= 32 and sm_id != new_sm_id()
    sm = StreamManagement(max_unacked=1, sm_id=sm_id)
    enabled = etree.fromstring(sm.enabled(60))
    assert (enabled.get("resume"), enabled.get("id"), enabled.get("max")) == ("true", sm_id, "60")
    sm.stanza_received()
    resumed = etree.fromstring(sm.resumed())
    assert (resumed.get("h"), resumed.get("previd")) == ("1", sm_id)


def test_failed_carries_a_stanza_condition() -> None:
    el = etree.fromstring(failed("item-not-found"))
    assert el.tag == ns.clark(ns.SM, "failed")
    assert el[0].tag == ns.clark(ns.STANZAS_ERR, "item-not-found")


def test_parse_h() -> None:
    assert parse_h("0") == 0 and parse_h(str(MODULUS - 1)) == MODULUS - 1
    for bad in (None, "", "-1", "x", str(MODULUS)):
        with pytest.raises(ValueError):
            parse_h(bad)


def test_only_stanzas_are_counted() -> None:
    assert is_stanza(_msg(1))
    assert is_stanza(b"<iq xmlns='jabber:client' type='result' id='a'/>")
    assert is_stanza(b"<presence/>")
    assert not is_stanza(StreamManagement(max_unacked=1).ack())
    assert not is_stanza(b"<enabled xmlns='urn:xmpp:sm:3'/>")
    assert not is_stanza(b"<iqx/>") and not is_stanza(b" ")


def test_config_section_defaults_and_bounds() -> None:
    from pubsubd.config import ConfigError, loads

    sm = loads("domains: [localhost]\n", "test").stream_management
    assert (sm.enabled, sm.resume_timeout, sm.max_unacked) == (True, 300.0, 1000)
    with pytest.raises(ConfigError, match="max_unacked"):
        loads("stream_management: {max_unacked: 0}\n", "test")
    with pytest.raises(ConfigError, match="resume_timeout"):
        loads("stream_management: {resume_timeout: -1}\n", "test")
