"""XEP-0059 Result Set Management: read a request's ``<set/>``, build the answer's ``<set/>``.

Pubsub item retrieval, disco#items and MAM page their results the same way, so the element is
read and written here once; what a page *means* (ids, order, limits) stays with each service.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from pubsubd import ns
from pubsubd.errors import Condition, StanzaError

SET = ns.clark(ns.RSM, "set")
_MAX = ns.clark(ns.RSM, "max")
_AFTER = ns.clark(ns.RSM, "after")
_BEFORE = ns.clark(ns.RSM, "before")
_INDEX = ns.clark(ns.RSM, "index")
_FIRST = ns.clark(ns.RSM, "first")
_LAST = ns.clark(ns.RSM, "last")
_COUNT = ns.clark(ns.RSM, "count")


@dataclass(frozen=True, slots=True)
class ResultSet:
    """A request's ``<set/>``. ``after``/``before`` keep their text as sent ("" when empty:
    ``<before/>`` asks for the last page, XEP-0059 §2.5); None means the element is absent."""

    max: int | None = None
    after: str | None = None
    before: str | None = None
    index: int | None = None


def find(parent: etree._Element) -> etree._Element | None:
    """The ``<set/>`` child of a request element, if any."""
    return parent.find(SET)


def parse(set_el: etree._Element) -> ResultSet:
    """Read a ``<set/>``; a ``max`` or ``index`` that is not a non-negative integer is a
    ``bad-request`` (XEP-0059 §2.1 and §2.4 define both as integers)."""
    return ResultSet(
        max=_number(set_el.findtext(_MAX), "max"),
        after=set_el.findtext(_AFTER),
        before=set_el.findtext(_BEFORE),
        index=_number(set_el.findtext(_INDEX), "index"),
    )


def has_max(set_el: etree._Element) -> bool:
    """Whether ``<max/>`` is present (:func:`parse` reads an empty one as no limit)."""
    return set_el.find(_MAX) is not None


def has_index(set_el: etree._Element) -> bool:
    """Whether the request pages by index (§2.4), which some services do not offer."""
    return set_el.find(_INDEX) is not None


def answer(count: int, first: str | None = None, last: str | None = None,
           first_index: int | None = None) -> etree._Element:
    """The ``<set/>`` of a response (§2.2): ``first``/``last`` only for a non-empty page,
    ``first_index`` as the ``index`` attribute of ``<first/>`` when the service reports it."""
    set_el = etree.Element(SET, nsmap={None: ns.RSM})
    if first is not None:
        first_el = etree.SubElement(set_el, _FIRST)
        if first_index is not None:
            first_el.set("index", str(first_index))
        first_el.text = first
        etree.SubElement(set_el, _LAST).text = last
    etree.SubElement(set_el, _COUNT).text = str(count)
    return set_el


def _number(value: str | None, what: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise StanzaError(Condition.BAD_REQUEST, f"{what} is not a number") from None
    if number < 0:
        raise StanzaError(Condition.BAD_REQUEST, f"{what} is negative")
    return number
