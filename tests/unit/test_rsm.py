"""XEP-0059 ``<set/>`` read and written once for pubsub, disco#items and MAM."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd.errors import Condition, StanzaError
from pubsubd.xml import rsm

RSM = "http://jabber.org/protocol/rsm"


def set_element(inner: str) -> etree._Element:
    return etree.fromstring(f"<query xmlns='urn:x'><set xmlns='{RSM}'>{inner}</set></query>")


def test_find_returns_the_set_child_only_in_the_rsm_namespace() -> None:
    assert rsm.find(set_element("")) is not None
    assert rsm.find(etree.fromstring("<q xmlns='urn:x'><set/></q>")) is None


def test_parse_reads_every_field() -> None:
    parsed = rsm.parse(rsm.find(set_element(  # type: ignore[arg-type]
        "<max>10</max><after>a1</after><before>b2</before><index>3</index>")))
    assert parsed == rsm.ResultSet(max=10, after="a1", before="b2", index=3)


def test_an_empty_before_asks_for_the_last_page_and_absent_fields_are_none() -> None:
    parsed = rsm.parse(rsm.find(set_element("<max> 5 </max><before/>")))  # type: ignore[arg-type]
    assert parsed == rsm.ResultSet(max=5, after=None, before="", index=None)
    assert not rsm.has_index(rsm.find(set_element("<before/>")))  # type: ignore[arg-type]
    assert rsm.has_max(rsm.find(set_element("<max/>")))  # type: ignore[arg-type]
    assert not rsm.has_max(rsm.find(set_element("<after>a</after>")))  # type: ignore[arg-type]
    assert rsm.has_index(rsm.find(set_element("<index>0</index>")))  # type: ignore[arg-type]


@pytest.mark.parametrize("inner", ["<max>ten</max>", "<max>-1</max>", "<index>x</index>",
                                   "<index>-2</index>"])
def test_a_count_that_is_not_a_non_negative_integer_is_a_bad_request(inner: str) -> None:
    with pytest.raises(StanzaError) as caught:
        rsm.parse(rsm.find(set_element(inner)))  # type: ignore[arg-type]
    assert caught.value.condition is Condition.BAD_REQUEST


def test_answer_for_a_page_names_first_last_and_count() -> None:
    answer = rsm.answer(42, "i7", "i9", first_index=7)
    assert etree.tostring(answer, encoding="unicode") == (
        f'<set xmlns="{RSM}"><first index="7">i7</first><last>i9</last><count>42</count></set>')
    plain = rsm.answer(3, "a", "c")
    assert plain.find(f"{{{RSM}}}first").get("index") is None  # type: ignore[union-attr]


def test_answer_for_an_empty_page_has_only_the_count() -> None:
    answer = rsm.answer(0)
    expected = f'<set xmlns="{RSM}"><count>0</count></set>'
    assert etree.tostring(answer, encoding="unicode") == expected
