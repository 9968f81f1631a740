"""XEP-0313 Message Archive Management for users' one-to-one messages, with XEP-0359 stanza
ids and XEP-0441 preferences.

Archiving happens in two hooks, so each archive gets a message exactly once (XEP-0313 §6.1.1):
``message/pre`` keeps a local client's message in the sender's archive (except messages to
the sender's own account, which arrive through the other path), and ``message/in`` keeps a
message about to be delivered to a local user in the recipient's archive and stamps it with
the archive id. A message between two local users that both archive it is queued once, for
both archives, with one id (the store writes one row for both). Writes are queued and
committed in batches by one background task, so routing never waits for the disk; a query
first commits whatever is queued, so a client never misses in its archive a message it was
already given. The two hooks never wait, so they are plain functions on the bus (no coroutine
per message), and they run for every chat message: each step is kept to its cheapest form.

Group commit: a batch is written after FLUSH_DELAY or once FLUSH_ROWS messages wait, whichever
comes first. SQLite's cost per archived message falls steeply with the batch size (each commit
writes every index page it touched to the WAL), and nothing is promised about a message's
archiving before a query asks: an XEP-0198 ack of the sender's stanza promises its receipt,
not its archiving. What a process killed with ``kill -9`` loses is the queue of the last
FLUSH_DELAY at most; every committed batch survives it (WAL with ``synchronous=NORMAL``, see
:mod:`pubsubd.storage.sqlite`).

The archive is exposed on the account's bare JID only (XEP-0313 §3.3.1); the server's own
JID has none, so ``urn:xmpp:mam:2`` is an account feature, not a server feature.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.config import MamConfig
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import SessionRegistry
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID, InvalidJID
from pubsubd.modules.xep0030_disco import DiscoModule
from pubsubd.storage.archive_ids import new_uid as new_uid  # for the room archive
from pubsubd.storage.archive_ids import next_id
from pubsubd.storage.interfaces import (
    ArchiveBatch,
    ArchivedMessage,
    ImStore,
    MamStore,
    Page,
    Prefs,
    Query,
)
from pubsubd.xml import builders
from pubsubd.xml import rsm as xml_rsm
from pubsubd.xml.forms import Field, Form, FormError
from pubsubd.xml.rsm import ResultSet

QUERY = ns.clark(ns.MAM, "query")
PREFS = ns.clark(ns.MAM, "prefs")
METADATA = ns.clark(ns.MAM, "metadata")
FLIP_PAGE = ns.clark(ns.MAM, "flip-page")
RESULT = ns.clark(ns.MAM, "result")
STANZA_ID = ns.clark(ns.SID, "stanza-id")
_SID_NSMAP = {None: ns.SID}
_SID = ns.SID.encode()
NO_STORE = ns.clark(ns.HINTS, "no-store")
NO_PERMANENT_STORE = ns.clark(ns.HINTS, "no-permanent-store")
X_DATA = ns.clark(ns.DATA_FORMS, "x")
XDATA_VALIDATE = "http://jabber.org/protocol/xdata-validate"
# Never archived: wrappers the server makes (carbon copies, archive results), and pubsub
# notifications, which are syndication rather than conversation (XEP-0313 §3 expects
# "meaningful content"), stay fetchable from their node, and would crowd chats out of the
# bounded archive when a feed has pubsub#include_body on.
SKIPPED_TAGS = frozenset({ns.clark(ns.CARBONS, "received"), ns.clark(ns.CARBONS, "sent"),
                          RESULT, NO_STORE, NO_PERMANENT_STORE,
                          ns.clark(ns.PUBSUB_EVENT, "event")})
POLICIES = ("always", "never", "roster")
# XEP-0313 §4.1 fields, with the #extended ones (before-id, after-id, ids) we implement.
FORM_FIELDS = frozenset({"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"})
MAX_IDS = 500  # archive ids one query may name in the 'ids' field
FLUSH_DELAY = 0.5  # seconds archived messages may wait to be written together
FLUSH_ROWS = 16_000  # ... unless this many wait already: then they are written at once

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def strip_stanza_ids(el: etree._Element, by: str) -> None:
    """XEP-0359 §3 rule 2: drop any stanza-id claiming to be ours, whoever added it."""
    # A plain loop over the few children: cheaper than lxml's tag-filtered iterators.
    found = [child for child in el if child.tag == STANZA_ID and child.get("by") == by]
    for child in found:
        el.remove(child)


def add_stanza_id(el: etree._Element, uid: str, by: str) -> None:
    etree.SubElement(el, STANZA_ID, {"id": uid, "by": by}, nsmap=_SID_NSMAP)


_BODY = ns.C_BODY
_ARCHIVED_TYPES = ("chat", "normal")
# What _scan finds: not archivable; archivable, with stanza-ids by others left; archivable
# and without stanza-ids (nothing to strip for any recipient either).
SKIP, KEEP, CLEAN = 0, 1, 2


def _scan(st: Stanza, by: str) -> int:
    """Strip the stanza-ids claiming to be ``by``'s (XEP-0359 §3 rule 2) and tell whether the
    message is archivable (XEP-0313 §6.1.1): normal and chat messages with a body; not errors,
    not copies the server made or pubsub notifications, not messages hinted away from storage
    (XEP-0334 §4); and whether stanza-ids by others remain (:data:`KEEP`, else
    :data:`CLEAN`). The child tags the parser noted answer it when the message carries no
    stanza-id; otherwise one pass over the children (each child lxml hands out costs a proxy
    object and its tag a new string)."""
    el = st.element
    children = st.children
    if children is not None and STANZA_ID not in children:
        if (_BODY not in children or not SKIPPED_TAGS.isdisjoint(children)
                or (el.get("type") or "normal") not in _ARCHIVED_TYPES):
            return SKIP
        return CLEAN
    body = skipped = others = False
    ours = None
    for child in el:
        tag = child.tag
        if tag == _BODY:
            body = True
        elif tag == STANZA_ID:
            if child.get("by") != by:
                others = True
            elif ours is None:
                ours = [child]
            else:
                ours.append(child)
        elif tag in SKIPPED_TAGS:
            skipped = True
    if ours is not None:
        for child in ours:
            el.remove(child)
        st.wire = None  # bytes serialized before are out of date now
        st.children = None
    # The stanza is a message: its type defaults to "normal" (Stanza.type, RFC 6121 §5.2.2).
    if not body or skipped or (el.get("type") or "normal") not in _ARCHIVED_TYPES:
        return SKIP
    return KEEP if others else CLEAN


_MESSAGE_END = b"</message>"
_END = len(_MESSAGE_END)
_PLAIN_ATTR = re.compile(r"[^&<>\"\t\n\r]*")
_SID_HEAD = b'<stanza-id xmlns="' + _SID + b'" id="'
_TAILS: dict[str, bytes | None] = {}  # by -> the bytes after the id, None: not plain text
_TAILS_MAX = 10_000  # archive owners whose tails are kept (the cache starts over beyond)


def _tail(by: str) -> bytes | None:
    """The bytes after the id of a stanza-id by ``by``, None if lxml would escape ``by``."""
    try:
        return _TAILS[by]
    except KeyError:
        pass
    tail = (b'" by="' + by.encode() + b'"/>' + _MESSAGE_END
            if by.isascii() and _PLAIN_ATTR.fullmatch(by) else None)
    if len(_TAILS) >= _TAILS_MAX:
        _TAILS.clear()
    _TAILS[by] = tail
    return tail


def with_stanza_id(el: etree._Element, uid: str, by: str, wire: bytes | None = None) -> bytes:
    """``el`` serialized with a stanza-id as its last child, the element left unchanged;
    ``wire``: ``el`` as already serialized, if it was.

    The bytes are those lxml would write after :func:`add_stanza_id` (double-quoted
    attributes, the default namespace declared on the child); splicing them in costs a
    fraction of inserting an element. An archivable message has a body, so it ends with
    ``</message>``; values lxml would escape (or write as character references: it writes
    ASCII) take the slow path."""
    if wire is None:
        wire = etree.tostring(el, with_tail=False)
    tail = _tail(by)
    if tail is not None and wire.endswith(_MESSAGE_END) and _PLAIN_ATTR.fullmatch(uid):
        return b"".join((wire[:-len(_MESSAGE_END)], _SID_HEAD, uid.encode(), tail))
    copy = etree.fromstring(wire)
    add_stanza_id(copy, uid, by)
    return etree.tostring(copy, with_tail=False)


def stamp_text(micros: int) -> str:
    """XEP-0082 DateTime in UTC with microseconds."""
    return (_EPOCH + micros * _MICROSECOND).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str, var: str) -> int:
    """A XEP-0082 DateTime (the zone is required) as microseconds since the epoch."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise StanzaError(Condition.BAD_REQUEST, f"{var}: not a XEP-0082 DateTime") from None
    if when.tzinfo is None:
        raise StanzaError(Condition.BAD_REQUEST, f"{var}: a time zone is required")
    return (when - _EPOCH) // _MICROSECOND


_SECONDS = re.compile(r"T\d\d:\d\d:\d\d(?:[.,](\d+))?")


def parse_end(text: str, var: str = "end") -> int:
    """The last microsecond an 'end' filter takes in: the end of the unit its last digit names.

    XEP-0082 §3.2: a DateTime is accurate to the second unless it carries fractions of a
    second, which a receiver MAY ignore; XEP-0313 §4.1.2: 'end' takes in messages whose
    timestamp is equal to or earlier than it. So "01:18:13Z" takes in a message received at
    01:18:13.3 (equal, to the second), as on a server that keeps whole seconds. Clients ask
    for "up to now" written to the second: Poezio shows a message that opened a tab twice
    when that answer lacks it (live, then again from its log). Six digits: exact."""
    end = parse_stamp(text, var)
    found = _SECONDS.search(text)
    if found is None:  # no seconds: not a XEP-0082 DateTime, read as Python reads it
        return end
    digits = len(found.group(1) or "")
    return end + 10 ** (6 - digits) - 1 if digits < 6 else end


_FIELDS = len(ArchivedMessage._fields)
# What _owner finds for an address: (the address, the owner's bare JID, its text: the 'by' of
# its stanza-ids, the bytes after the id in them (_tail), whether its archive takes every
# message: no preferences of its own and a default of "always").
_Owner = tuple[JID, JID, str, bytes | None, bool]
_FULL_AT = (FLUSH_ROWS - 1) * _FIELDS  # where the last message of a full batch is queued


class MamModule(Module):
    name = "mam"

    def __init__(self, *, settings: MamConfig, store: MamStore, rosters: ImStore, router: Router,
                 hooks: HookBus, sessions: SessionRegistry, disco: DiscoModule) -> None:
        super().__init__()
        self.config = settings
        self.store = store
        self.roster = rosters
        self.router = router
        self.hooks = hooks
        self.sessions = sessions
        self.disco = disco
        self._pending = ArchiveBatch()  # the queue
        self._fields = self._pending.fields  # ... extended in place
        self._default_prefs = Prefs(settings.default)  # users who set none share it
        # Their verdict for every contact, None when it depends on the contact (roster).
        self._default_allows = {"always": True, "never": False}.get(settings.default)
        self._owners: dict[int, _Owner] = {}  # see _owner
        self._wake = trio.Event()
        self._full = trio.Event()  # FLUSH_ROWS are waiting
        self._flush_lock = trio.Lock()
        # The last local client's message found archivable and free of stanza-ids on its way
        # out: on its way in to a local recipient it needs no second look at its children.
        self._clean: Stanza | None = None
        # The last local client's message queued for the sender's archive, and where its
        # fields start in the queue: the recipient's archive shares that entry, one row and
        # one id for both, unless the queue was written in between (which forgets it).
        self._open: Stanza | None = None
        self._open_at = 0

    def setup(self) -> None:
        if not self.config.enabled:
            return
        router = self.router
        router.wants_children = True  # _scan reads the parsed child tags when it can
        router.add_iq_handler("self", "set", QUERY, self.query)
        router.add_iq_handler("self", "get", QUERY, self.query_form)
        router.add_iq_handler("self", "get", PREFS, self.get_prefs)
        router.add_iq_handler("self", "set", PREFS, self.set_prefs)
        router.add_iq_handler("self", "get", METADATA, self.metadata)
        for type_, tag in (("set", QUERY), ("get", QUERY), ("get", PREFS), ("set", PREFS),
                           ("get", METADATA)):
            router.add_iq_handler("bare", type_, tag, self.forbidden)
        hooks = self.hooks
        # After blocking (100) drops what the user refuses (XEP-0313 §6.1), before carbons
        # (50) so that carbon copies carry the stanza-id (XEP-0313 §3.5). Plain functions:
        # they only queue, never wait.
        hooks.on_plain("message/in", self._incoming, priority=60)
        hooks.on_plain("message/pre", self._outgoing, priority=60)
        hooks.on("account/deleted", self._account_deleted)
        # XEP-0313 §7: advertised on the archiving JIDs, i.e. accounts.
        self.disco.account_features.update((ns.MAM, ns.MAM_EXTENDED))

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            # Let a burst of messages gather, so one transaction archives them all rather
            # than one database round trip per message.
            with trio.move_on_after(FLUSH_DELAY):
                await self._full.wait()
            self._wake = trio.Event()
            self._full = trio.Event()
            await self._flush()

    async def stop(self) -> None:
        await self._flush()

    # --- archiving ----------------------------------------------------------------------

    def _owner(self, jid: JID) -> _Owner:
        """The archive that ``jid``'s messages go to (:class:`_Owner`), kept until the owner's
        preferences change. Kept by the identity of ``jid``: a session's JID and the parsed
        addresses of stanzas are shared objects, and the hooks find them without hashing a
        JID or building its bare form."""
        found = self._owners.get(id(jid))
        if found is not None and found[0] is jid:
            return found
        owner = jid.bare
        by = str(owner)
        if len(self._owners) >= _TAILS_MAX:
            self._owners.clear()
        everyone = self.store.prefs(owner) is None and self._default_allows is True
        found = self._owners[id(jid)] = (jid, owner, by, _tail(by), everyone)
        return found

    def _forget_owner(self, owner: JID) -> None:
        """After ``owner``'s preferences changed: its entries in :meth:`_owner` are stale."""
        stale = [key for key, found in self._owners.items() if found[1] == owner]
        for key in stale:
            del self._owners[key]

    def _allowed(self, owner: JID, remote: JID, prefs: Prefs | None) -> bool:
        """XEP-0441 preferences (``prefs``: the owner's, None if it set none): the never list,
        then the always list, then the default. The hooks ask the store for ``prefs`` and
        call this unless the default decides alone, as it does for most users."""
        if prefs is None:
            allowed = self._default_allows
            if allowed is not None:
                return allowed
            prefs = self._default_prefs
        if prefs.never or prefs.always:
            contact = str(remote.bare)
            if contact in prefs.never:
                return False
            if contact in prefs.always:
                return True
        if prefs.default == "roster":
            return self.roster.item(owner, remote) is not None
        return prefs.default == "always"

    async def _flush(self) -> None:
        async with self._flush_lock:
            batch = self._pending
            self._pending = ArchiveBatch()
            self._fields = self._pending.fields
            self._open = None  # its entry is in the batch: the recipient's copy gets its own
            if not batch:
                return
            try:
                await self.store.append(batch, self.config.max_messages_per_user)
            except Exception:
                self.log.exception("could not archive %d messages", len(batch))

    def _incoming(self, st: Stanza) -> bool:
        """The recipient's copy, stamped with its archive id (XEP-0313 §3.5)."""
        to = st.to
        if to is None:
            return False
        found = self._owners.get(id(to))
        if found is None or found[0] is not to:
            found = self._owner(to)
        _, owner, by, tail, everyone = found
        if st is self._clean:
            self._clean = None  # archivable, and without stanza-ids of anyone's to strip
        elif not _scan(st, by):
            return False
        sender = st.from_
        if not everyone and not self._allowed(owner, sender, self.store.prefs(owner)):
            return False
        # Archived as it came, less any stanza-id claiming to be the owner's (the archive's
        # result carries the id, XEP-0313 §4.2); delivered with its stanza-id spliced in: the
        # router delivers these bytes, carbons and offline storage copy them (Stanza.wire).
        wire = st.wire  # a local sender's message was serialized for its own archive
        if wire is None:
            wire = etree.tostring(st.element, with_tail=False)
        fields = self._fields
        if st is self._open:
            self._open = None
            # The sender's archive has it, still queued: one entry, one id, for both.
            place = self._open_at
            uid = fields[place + 1]
            fields[place + 4] = wire  # without a stanza-id the sender forged for the recipient
            fields[place + 5] = sender
        else:
            seq, uid = next_id()
            # Queued as the fields of an ArchivedMessage (its seq is its stamp too).
            place = len(fields)
            fields += (owner, uid, seq, sender, wire, None, seq)
            if not place:
                self._wake.set()
            elif place >= _FULL_AT:
                self._full.set()
        # with_stanza_id for an id of ours (plain text: nothing to check) and the owner's
        # _tail already found; written out here, as this runs for every archived message.
        if tail is not None and wire.endswith(_MESSAGE_END):
            st.wire = b"".join((wire[:-_END], _SID_HEAD, uid.encode(), tail))
        else:
            st.wire = with_stanza_id(st.element, uid, by, wire)
        return False

    def _outgoing(self, st: Stanza) -> bool:
        """The sender's copy of a local client's message."""
        if st.origin is None:
            return False
        sender = st.from_
        found = self._owners.get(id(sender))
        if found is None or found[0] is not sender:
            found = self._owner(sender)
        _, owner, by, _, everyone = found
        scanned = _scan(st, by)
        if not scanned:
            return False
        if scanned == CLEAN:
            self._clean = st
        to = st.to
        # Messages to oneself are archived once, on the way in. (Bare JIDs are equal when
        # their local and domain parts are.)
        if to is None or (to.local == owner.local and to.domain == owner.domain):
            return False
        if not everyone and not self._allowed(owner, to, self.store.prefs(owner)):
            return False
        seq, uid = next_id()
        # Kept on the stanza: the recipient's copy is these bytes plus its stanza-id.
        st.wire = wire = etree.tostring(st.element, with_tail=False)
        fields = self._fields
        place = len(fields)
        fields += (owner, uid, seq, to, wire, None, seq)  # see _incoming
        if not place:
            self._wake.set()
        elif place >= _FULL_AT:
            self._full.set()
        self._open_at = place
        self._open = st
        # XEP-0313 §3.5: the sent carbon copies carry it; the contact may not see it, so it is
        # not added to the message itself.
        st.archive_id = uid
        return False

    async def _account_deleted(self, jid: JID) -> bool:
        await self._flush()
        await self.store.forget(jid)
        self._forget_owner(jid.bare)  # its preferences are gone
        return False

    # --- queries (XEP-0313 §4) ------------------------------------------------------------

    async def forbidden(self, st: Stanza) -> None:
        raise StanzaError(Condition.FORBIDDEN, "an archive is open to its owner only")  # §8.1

    async def query_form(self, st: Stanza) -> etree._Element:
        """XEP-0313 §4.1.5: the fields we support, none of them required."""
        form = Form.with_form_type("form", ns.MAM, [
            Field("with", "jid-single"), Field("start", "text-single"),
            Field("end", "text-single"), Field("before-id", "text-single"),
            Field("after-id", "text-single"), Field("ids", "list-multi")])
        x = form.to_element()
        for field_el in x.iterfind(ns.clark(ns.DATA_FORMS, "field")):
            if field_el.get("var") == "ids":
                # XEP-0313 §4.1.5 / XEP-0122: the list is open to any value.
                validate = etree.SubElement(field_el, ns.clark(XDATA_VALIDATE, "validate"),
                                            nsmap={None: XDATA_VALIDATE}, datatype="xs:string")
                etree.SubElement(validate, ns.clark(XDATA_VALIDATE, "open"))
        result = builders.element(ns.MAM, "query")
        result.append(x)
        return result

    async def query(self, st: Stanza) -> etree._Element:
        request = st.element[0]
        owner = st.from_.bare
        if request.get("node") is not None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "a user archive has no nodes")  # §6.1.3
        filters = _read_form(request.find(X_DATA))
        rsm = _read_rsm(xml_rsm.find(request))
        await self._flush()  # what was routed before the query is in its results
        ids = [i for i in (filters.after_id, filters.before_id, rsm.after, rsm.before) if i]
        ids += filters.ids or ()
        seqs = await self.store.seqs(owner, ids) if ids else {}
        missing = [i for i in ids if i not in seqs]
        if missing:
            # §4.1.3 and §4.3.2: an unknown archive id is item-not-found.
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"not in the archive: {missing[0]}")
        with_ = filters.with_
        query = Query(
            owner,
            with_bare=str(with_.bare) if with_ is not None else None,
            with_full=str(with_) if with_ is not None and with_.resource else None,
            start=filters.start, end=filters.end,
            after_seq=seqs[filters.after_id] if filters.after_id else None,
            before_seq=seqs[filters.before_id] if filters.before_id else None,
            uids=tuple(filters.ids) if filters.ids is not None else None)
        page_size = self.config.max_page_size
        limit = page_size if rsm.max is None else min(rsm.max, page_size)
        page = await self.store.page(
            query, limit, after_seq=seqs.get(rsm.after) if rsm.after else None,
            before_seq=seqs.get(rsm.before) if rsm.before else None,
            backward=rsm.before is not None)
        self._send_results(st, owner, request.get("queryid"), page,
                           flip=request.find(FLIP_PAGE) is not None)
        # The index is optional (§4.3.2); it is left out of backward pages, whose index
        # clients that page by "index + page size == count" would take for the end.
        return _fin(page, with_index=rsm.before is None)

    def _send_results(self, st: Stanza, owner: JID, queryid: str | None, page: Page,
                      flip: bool) -> None:
        """§4.2: one message per result, to the querying resource, before the IQ result.

        Built as bytes around the stored stanza, which is never parsed again."""
        session = st.origin or self.sessions.get(st.from_)
        if session is None:
            return
        head = (b"<message xmlns='jabber:client' to=" + quoteattr(str(st.from_)).encode()
                + b" from=" + quoteattr(str(owner)).encode())
        query_attr = (b" queryid=" + quoteattr(queryid).encode()) if queryid is not None else b""
        rows = reversed(page.rows) if flip else page.rows  # §4.3.4: only the order changes
        for row in rows:
            session.send(
                head + b" id=" + quoteattr(builders.new_id()).encode()
                + b"><result xmlns='urn:xmpp:mam:2'" + query_attr
                + b" id=" + quoteattr(row.uid).encode()
                + b"><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='"
                + stamp_text(row.stamp).encode() + b"'/>" + row.stanza
                + b"</forwarded></result></message>")

    async def metadata(self, st: Stanza) -> etree._Element:
        """XEP-0313 §5: the first and last message of the archive (empty if none)."""
        await self._flush()
        result = builders.element(ns.MAM, "metadata")
        bounds = await self.store.bounds(st.from_.bare)
        if bounds is not None:
            for name, row in zip(("start", "end"), bounds, strict=True):
                etree.SubElement(result, ns.clark(ns.MAM, name), id=row.uid,
                                 timestamp=stamp_text(row.stamp))
        return result

    # --- preferences (XEP-0441) -----------------------------------------------------------

    async def get_prefs(self, st: Stanza) -> etree._Element:
        return _prefs_element(self.store.prefs(st.from_) or Prefs(self.config.default))

    async def set_prefs(self, st: Stanza) -> etree._Element:
        request = st.element[0]
        current = self.store.prefs(st.from_) or Prefs(self.config.default)
        default = request.get("default", current.default)
        if default not in POLICIES:
            raise StanzaError(Condition.BAD_REQUEST, f"default must be one of {POLICIES}")
        prefs = Prefs(default, _jid_list(request, "always"), _jid_list(request, "never"))
        if prefs.always & prefs.never:
            raise StanzaError(Condition.BAD_REQUEST, "a JID is both always and never archived")
        await self.store.set_prefs(st.from_, prefs)
        self._forget_owner(st.from_.bare)  # whether it takes every message may change
        return _prefs_element(prefs)


def _read_rsm(set_el: etree._Element | None) -> ResultSet:
    """The XEP-0059 request of a query: max, after, and before ('' for the last page)."""
    if set_el is None:
        return ResultSet()
    if xml_rsm.has_index(set_el):
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "paging by index is not supported")
    request = xml_rsm.parse(set_el)
    if request.max is None and xml_rsm.has_max(set_el):
        raise StanzaError(Condition.BAD_REQUEST, "max must be a non-negative integer")
    after = request.after
    if after is not None and not after.strip():
        raise StanzaError(Condition.BAD_REQUEST, "after needs an id")  # XEP-0059 §2.2
    before = request.before
    return ResultSet(request.max, after.strip() if after else None,
                     before.strip() if before is not None else None)


@dataclass(slots=True)
class _Filters:
    """The fields of a submitted query form (XEP-0313 §4.1)."""

    with_: JID | None = None
    start: int | None = None
    end: int | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: list[str] | None = None


def _read_form(x: etree._Element | None) -> _Filters:
    """The filters of a submitted query form, checked and parsed."""
    filters = _Filters()
    if x is None:
        return filters
    try:
        form = Form.from_element(x)
    except FormError as exc:
        raise StanzaError(Condition.BAD_REQUEST, str(exc)) from None
    if form.type != "submit":
        raise StanzaError(Condition.BAD_REQUEST, "the query form must be submitted")
    if form.form_type not in (None, ns.MAM):
        raise StanzaError(Condition.BAD_REQUEST, f"unexpected FORM_TYPE {form.form_type}")
    for field in form.fields:
        var = field.var or ""
        if var not in FORM_FIELDS:
            # §4.1.5: an unknown field is feature-not-implemented.
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"unsupported field {var!r}")
        if var == "ids":
            if len(field.values) > MAX_IDS:
                raise StanzaError(Condition.POLICY_VIOLATION, f"at most {MAX_IDS} ids")
            filters.ids = [v.strip() for v in field.values]
            continue
        value = (field.value or "").strip()
        if not value:
            continue
        if var == "with":
            try:
                filters.with_ = JID.parse(value)
            except InvalidJID:
                raise StanzaError(Condition.BAD_REQUEST, "with: not a JID") from None
        elif var == "start":
            filters.start = parse_stamp(value, var)  # §4.1.2
        elif var == "end":
            filters.end = parse_end(value, var)
        elif var == "after-id":
            filters.after_id = value
        elif var == "before-id":
            filters.before_id = value
    return filters


def _fin(page: Page, with_index: bool) -> etree._Element:
    """§4.3: <fin> with the RSM summary of what was sent."""
    fin = builders.element(ns.MAM, "fin", complete="true" if page.complete else "false")
    if page.rows:
        fin.append(xml_rsm.answer(page.count, page.rows[0].uid, page.rows[-1].uid,
                              page.first_index if with_index else None))
    else:
        fin.append(xml_rsm.answer(page.count))
    return fin


def _prefs_element(prefs: Prefs) -> etree._Element:
    el = builders.element(ns.MAM, "prefs", default=prefs.default)
    for name, jids in (("always", prefs.always), ("never", prefs.never)):
        holder = etree.SubElement(el, ns.clark(ns.MAM, name))
        for jid in sorted(jids):
            etree.SubElement(holder, ns.clark(ns.MAM, "jid")).text = jid
    return el


def _jid_list(prefs: etree._Element, name: str) -> frozenset[str]:
    holder = prefs.find(ns.clark(ns.MAM, name))
    if holder is None:
        return frozenset()
    jids = set()
    for jid_el in holder.iterfind(ns.clark(ns.MAM, "jid")):
        try:
            jids.add(str(JID.parse((jid_el.text or "").strip()).bare))
        except InvalidJID:
            raise StanzaError(Condition.JID_MALFORMED, f"{name}: not a JID") from None
    return frozenset(jids)
