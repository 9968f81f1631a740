"""A room's archive (XEP-0313 §6.1.2 on the room JID) and the moderation of what it holds
(XEP-0425).

Room archives live in the :class:`MamStore` under the room's bare JID (room JIDs never meet
account JIDs, which are on other domains); each message's ``remote`` is the sender's occupant
JID, so ``with`` filters by nick. Every groupchat message gets a XEP-0359 stanza-id ``by`` the
room, which is its archive id and the id moderators retract by.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from lxml import etree

from pubsubd import ns
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0313_mam import (
    add_stanza_id,
    new_uid,
    parse_end,
    parse_stamp,
    stamp_text,
    strip_stanza_ids,
)
from pubsubd.storage.interfaces import ArchivedMessage, MamStore, Page, Query
from pubsubd.xml import builders
from pubsubd.xml import rsm as xml_rsm
from pubsubd.xml.forms import Field, Form, FormError

_QUERY_FIELDS = frozenset({"FORM_TYPE", "with", "start", "end", "before-id", "after-id"})

Send = Callable[[JID, etree._Element], Awaitable[None]]


def stamp_message(template: etree._Element, room: JID) -> str:
    """XEP-0359 §3: drop stanza-ids claiming to be the room's, add the room's own."""
    uid = new_uid()
    strip_stanza_ids(template, str(room))
    add_stanza_id(template, uid, str(room))
    return uid


class RoomArchive:
    """Storing, querying and retracting the messages of rooms."""

    def __init__(self, store: MamStore, keep: int, max_page: int, send: Send) -> None:
        self.store = store
        self.keep = keep
        self.max_page = max_page
        self.send = send

    async def record(self, room: JID, uid: str, sender: str, template: etree._Element) -> None:
        stamp = time.time_ns() // 1000
        await self.store.append([ArchivedMessage(room, uid, stamp, JID.parse(sender),
                                                 etree.tostring(template))], self.keep)

    async def forget(self, room: JID) -> None:
        await self.store.forget(room)

    @staticmethod
    def query_form() -> etree._Element:
        """XEP-0313 §4.1.5: the fields a room's archive can be filtered by."""
        form = Form.with_form_type("form", ns.MAM, [
            Field("with", "jid-single"), Field("start", "text-single"),
            Field("end", "text-single"), Field("before-id", "text-single"),
            Field("after-id", "text-single")])
        result = builders.element(ns.MAM, "query")
        result.append(form.to_element())
        return result

    async def query(self, room: JID, to: JID, request: etree._Element) -> etree._Element:
        """XEP-0313 §4: results as messages from the room, then the <fin/> to return."""
        filters = _filters(request.find(ns.clark(ns.DATA_FORMS, "x")))
        set_el = xml_rsm.find(request)
        rsm = xml_rsm.parse(set_el) if set_el is not None else None
        if set_el is not None and xml_rsm.has_index(set_el):
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "paging by index")
        after = rsm.after if rsm is not None else None
        before = rsm.before if rsm is not None else None
        ids = [i for i in (filters.get("after-id"), filters.get("before-id"), after, before) if i]
        seqs = await self.store.seqs(room, ids) if ids else {}
        missing = [i for i in ids if i not in seqs]
        if missing:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"not in the archive: {missing[0]}")
        with_ = filters.get("with")
        query = Query(room, with_full=with_ or None,
                      start=parse_stamp(filters["start"], "start") if "start" in filters else None,
                      end=parse_end(filters["end"]) if "end" in filters else None,
                      after_seq=seqs.get(filters.get("after-id", "")),
                      before_seq=seqs.get(filters.get("before-id", "")))
        wanted = rsm.max if rsm is not None and rsm.max is not None else self.max_page
        page = await self.store.page(query, min(wanted, self.max_page),
                                     after_seq=seqs.get(after) if after else None,
                                     before_seq=seqs.get(before) if before else None,
                                     backward=before is not None)
        await self._send_results(room, to, request.get("queryid"), page)
        fin = builders.element(ns.MAM, "fin", complete="true" if page.complete else "false")
        if page.rows:
            fin.append(xml_rsm.answer(page.count, page.rows[0].uid, page.rows[-1].uid,
                                      page.first_index if before is None else None))
        else:
            fin.append(xml_rsm.answer(page.count))
        return fin

    async def _send_results(self, room: JID, to: JID, queryid: str | None, page: Page) -> None:
        for row in page.rows:
            msg = builders.stanza("message", to=str(to), from_=str(room))
            result = builders.child(msg, ns.MAM, "result", id=row.uid)
            if queryid is not None:
                result.set("queryid", queryid)
            forwarded = builders.child(result, ns.FORWARD, "forwarded")
            builders.child(forwarded, ns.DELAY, "delay", stamp=stamp_text(row.stamp))
            forwarded.append(etree.fromstring(row.stanza))
            await self.send(to, msg)

    async def retract(self, room: JID, uid: str, by: str,
                      reason: str | None) -> etree._Element:
        """XEP-0425 §4: the message becomes a tombstone in the archive; returns the
        retraction to broadcast to the occupants."""
        page = await self.store.page(Query(room, uids=(uid,)), 1)
        if not page.rows:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such message in the archive")
        original = etree.fromstring(page.rows[0].stanza)
        tombstone = builders.stanza("message", from_=original.get("from"),
                                    type_="groupchat", id_=original.get("id"))
        retracted = builders.child(tombstone, ns.MESSAGE_RETRACT, "retracted",
                                   stamp=stamp_text(time.time_ns() // 1000))
        _moderated(retracted, by, reason)
        for sid in original.findall(ns.clark(ns.SID, "stanza-id")):
            tombstone.append(sid)
        await self.store.replace_stanza(room, uid, etree.tostring(tombstone))
        notice = builders.stanza("message", from_=str(room), type_="groupchat")
        retract = builders.child(notice, ns.MESSAGE_RETRACT, "retract", id=uid)
        _moderated(retract, by, reason)
        # XEP-0428 fallback for clients that know nothing of retractions
        etree.SubElement(notice, ns.clark(ns.CLIENT, "body")).text = (
            "This message was retracted by a moderator.")
        return notice


def _moderated(parent: etree._Element, by: str, reason: str | None) -> None:
    builders.child(parent, ns.MESSAGE_MODERATE, "moderated", by=by)
    if reason:
        etree.SubElement(parent, ns.clark(ns.MESSAGE_RETRACT, "reason")).text = reason


def _filters(x: etree._Element | None) -> dict[str, str]:
    """The submitted query form's non-empty fields (XEP-0313 §4.1)."""
    if x is None:
        return {}
    try:
        form = Form.from_element(x)
    except FormError as error:
        raise StanzaError(Condition.BAD_REQUEST, str(error)) from None
    found = {}
    for field in form.fields:
        if field.var not in _QUERY_FIELDS:
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"unsupported field {field.var}")
        if field.var != "FORM_TYPE" and field.value:
            found[field.var] = field.value.strip()
    return found


def room_stanza_id(el: etree._Element, room: JID) -> str | None:
    for sid in el.findall(ns.clark(ns.SID, "stanza-id")):
        if sid.get("by") == str(room):
            return sid.get("id")
    return None
