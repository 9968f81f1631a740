"""BOSH (XEP-0124) sessions carrying XMPP (XEP-0206), sans I/O.

A BOSH client sends HTTP requests, each a ``<body/>`` wrapper with a request id (``rid``) and
zero or more stanzas; the connection manager holds up to ``hold`` requests open and answers
one whenever it has something for the client, or after ``wait`` seconds. This module keeps
one session's bookkeeping: which rids have arrived (and in which order their payloads may go
to the XMPP stream), which requests are waiting, which responses are buffered for
retransmission, and when the client broke the rules. The trio shell in
:mod:`pubsubd.net.bosh` only moves bytes and sleeps until :meth:`BoshSession.next_deadline`.

Requests are named by *tickets*: a request repeated with the same rid gets a new ticket and
the old one is answered at once (XEP-0124 §14.3), so the shell waits for its ticket, not for
its rid.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from lxml import etree

from pubsubd import ns

BOSH_NS = "http://jabber.org/protocol/httpbind"
XBOSH_NS = "urn:xmpp:xbosh"
BOSH_VERSION = "1.11"
_T_BODY = ns.clark(BOSH_NS, "body")
_XBOSH_VERSION = ns.clark(XBOSH_NS, "version")
_XBOSH_RESTART = ns.clark(XBOSH_NS, "restart")
MAX_RID = 2**53 - 1  # XEP-0124 §14.1
CREATION_WAIT = 5  # seconds the creation response may wait for the stream features

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False)


class BoshError(Exception):
    """A terminal binding condition (XEP-0124 §17.2): the session, if any, ends."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(text or condition)
        self.condition = condition


# --- parsing requests ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BoshRequest:
    """One ``<body/>`` from the client."""

    rid: int
    sid: str | None
    payloads: tuple[bytes, ...]  # each child element, serialized with its namespaces
    type: str | None = None  # "terminate" ends the session (XEP-0124 §13)
    restart: bool = False  # XEP-0206 §5: a new stream on the same session
    ack: int | None = None
    # session creation (XEP-0124 §7.1 / XEP-0206 §3)
    to: str | None = None
    lang: str | None = None
    wait: int | None = None
    hold: int | None = None
    xmpp_version: str | None = None


def parse_request(data: bytes) -> BoshRequest:
    """The request in an HTTP body; :class:`BoshError` ``bad-request`` when it is not one."""
    if b"<!DOCTYPE" in data:
        raise BoshError("bad-request", "DTDs are not allowed")  # RFC 6120 §11.1
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        raise BoshError("bad-request", "the request is not well-formed XML") from None
    if root.tag != _T_BODY:
        raise BoshError("bad-request", "the request is not a <body/> of the BOSH namespace")
    rid = _int(root.get("rid"))
    if rid is None or not 0 < rid <= MAX_RID:
        raise BoshError("bad-request", "missing or invalid rid")
    payloads = []
    for child in root:
        if not isinstance(child.tag, str):
            raise BoshError("bad-request", "comments and processing instructions are not allowed")
        child.tail = None
        payloads.append(etree.tostring(child))
    return BoshRequest(
        rid=rid, sid=root.get("sid"), payloads=tuple(payloads), type=root.get("type"),
        restart=root.get(_XBOSH_RESTART) in ("true", "1"), ack=_int(root.get("ack")),
        to=root.get("to"), lang=root.get(ns.XML_LANG), wait=_int(root.get("wait")),
        hold=_int(root.get("hold")), xmpp_version=root.get(_XBOSH_VERSION),
    )


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


def stream_header(request: BoshRequest, domain: str) -> bytes:
    """The classic stream header a creation or restart request stands for (XEP-0206 §3, §5)."""
    attributes = f" to={quoteattr(request.to or domain)} version='1.0'"
    if request.lang:
        attributes += f" xml:lang={quoteattr(request.lang)}"
    return (f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}'"
            f"{attributes}>").encode()


# --- responses ----------------------------------------------------------------------------

def body(payloads: list[str] | tuple[str, ...] = (), **attributes: str) -> bytes:
    """A response ``<body/>``; attribute names with ``xmpp_`` are in the xbosh namespace."""
    attrs = "".join(f" {name.replace('xmpp_', 'xmpp:')}={quoteattr(value)}"
                    for name, value in attributes.items())
    head = (f"<body xmlns='{BOSH_NS}' xmlns:xmpp='{XBOSH_NS}'"
            f" xmlns:stream='{ns.STREAM}'{attrs}")
    if not payloads:
        return (head + "/>").encode()
    return (head + ">" + "".join(payloads) + "</body>").encode()


def terminate(condition: str | None = None, payloads: tuple[str, ...] | list[str] = ()) -> bytes:
    """XEP-0124 §13 / §17.2: the session is over (with the reason, if it is an error)."""
    if condition is None:
        return body(payloads, type="terminate")
    return body(payloads, type="terminate", condition=condition)


# --- one session --------------------------------------------------------------------------

@dataclass(slots=True)
class _Waiting:
    ticket: int
    arrived: float
    empty: bool


@dataclass(frozen=True, slots=True)
class BoshLimits:
    """What the server grants (XEP-0124 §7.2)."""

    max_wait: int = 60
    max_hold: int = 1
    inactivity: int = 60
    polling: int = 2
    max_requests: int = 2  # simultaneous requests; at least hold + 1


@dataclass(slots=True)
class Accepted:
    """A new request: its ticket, and the requests whose payloads may now go, in rid order."""

    ticket: int
    in_order: list[BoshRequest] = field(default_factory=list)


class BoshSession:
    """The rid window, the waiting requests, the pending output and the response buffer."""

    def __init__(self, sid: str, first: BoshRequest, limits: BoshLimits, now: float) -> None:
        self.sid = sid
        self.wait = max(0, min(first.wait if first.wait is not None else limits.max_wait,
                               limits.max_wait))
        self.hold = max(0, min(first.hold if first.hold is not None else 1, limits.max_hold))
        self.requests = max(self.hold + 1, limits.max_requests if self.hold else 1)
        self.polling = limits.polling
        # XEP-0124 §12: a polling session gets a longer inactivity than its polling interval.
        self.inactivity = limits.inactivity + (limits.polling if self.hold == 0 else 0)
        self.acks = first.ack is not None  # XEP-0124 §9: the client asked for acknowledgements
        self.stream_from = ""  # the XMPP stream's 'from' and id, for the creation response
        self.stream_id = ""
        self.next_rid = first.rid  # the lowest rid not yet passed on
        self.highest_rid = first.rid - 1
        self.waiting: OrderedDict[int, _Waiting] = OrderedDict()  # rid → request, by rid
        self._early: dict[int, BoshRequest] = {}  # rids after a gap, held until it is filled
        self.buffered: OrderedDict[int, bytes] = OrderedDict()  # rid → the response sent
        self.responses: dict[int, bytes] = {}  # ticket → its response, for the shell to take
        self.output: list[str] = []  # payloads for the next response
        self.ended: bytes | None = None  # the terminate body, once the session is over
        self.last_activity = now
        self._last_empty_poll = -1.0e9
        self._last_answer_empty = False
        self._created = False
        self._tickets = 0

    # client → server ----------------------------------------------------------------------

    def receive(self, request: BoshRequest, now: float) -> Accepted:
        """Take a request; :class:`BoshError` ends the session (its body is in :attr:`ended`)."""
        self.last_activity = now
        if self.ended is not None:
            raise BoshError("item-not-found", "the session is over")
        rid = request.rid
        if rid in self.buffered:  # XEP-0124 §14.3: a lost response, sent again
            ticket = self._ticket()
            self.responses[ticket] = self.buffered[rid]
            return Accepted(ticket)
        if rid in self.waiting:  # the same rid again while it is still waiting
            old = self.waiting[rid]
            self.responses[old.ticket] = body(type="error")  # XEP-0124 §17.3, recoverable
            old.ticket = self._ticket()
            return Accepted(old.ticket)
        if rid in self._early:
            raise self._end("item-not-found", "rid repeated while out of order")
        if rid < self.next_rid:  # XEP-0124 §14.3: its response is no longer kept
            raise self._end("item-not-found", "rid no longer in the buffer")
        terminating = request.type == "terminate"
        empty = not request.payloads and not request.restart and not terminating
        if len(self.waiting) >= self.requests and not terminating:
            # XEP-0124 §11: more new requests than 'requests' and none answered yet (only
            # requests after a gap wait that way: in order, the oldest is answered over 'hold').
            raise self._end("policy-violation", "too many simultaneous requests")
        if rid > self.next_rid + self.requests:  # XEP-0124 §14.2: far beyond the window
            raise self._end("item-not-found", "rid outside the window")
        if (empty and self.polling and self.hold == 0 and self._last_answer_empty
                and not self.waiting and now - self._last_empty_poll < self.polling):
            raise self._end("policy-violation", "polling too frequently")  # XEP-0124 §12
        if empty:
            self._last_empty_poll = now
        self.highest_rid = max(self.highest_rid, rid)
        if request.ack is not None:
            for old_rid in [r for r in self.buffered if r <= request.ack]:
                del self.buffered[old_rid]  # XEP-0124 §9.2: the client has these
        ticket = self._ticket()
        self.waiting[rid] = _Waiting(ticket, now, empty)
        self.waiting = OrderedDict(sorted(self.waiting.items()))
        self._early[rid] = request
        in_order = []
        while self.next_rid in self._early:
            in_order.append(self._early.pop(self.next_rid))
            self.next_rid += 1
        return Accepted(ticket, in_order)

    # server → client ----------------------------------------------------------------------

    def push(self, payloads: list[str]) -> None:
        """Stanzas (and stream features) for the client."""
        self.output.extend(payloads)

    def end(self, condition: str | None = None, payloads: tuple[str, ...] = ()) -> None:
        """The XMPP stream ended (or the session timed out): every waiting request hears it."""
        if self.ended is None:
            self.ended = terminate(condition, [*self.output, *payloads])
            self.output.clear()
        for rid, waiting in list(self.waiting.items()):
            self.responses[waiting.ticket] = self.ended
            del self.waiting[rid]

    def advance(self, now: float) -> None:
        """Answer what is due: output, a request over ``hold``, a request past ``wait``."""
        if self.ended is not None:
            self.end()
            return
        answerable = [rid for rid in self.waiting if rid < self.next_rid]
        while answerable:
            rid = answerable[0]
            waiting = self.waiting[rid]
            # XEP-0206 §3: the creation response waits for the stream features, even when
            # the client polls (hold 0) or does not want to wait.
            over_hold = len(self.waiting) > (self.hold if self._created else max(self.hold, 1))
            if not (self.output or over_hold or now >= self._deadline(waiting)):
                break
            self._answer(rid, now)
            answerable.pop(0)
        if not self.waiting and now >= self.last_activity + self.inactivity:
            self.end()  # XEP-0124 §10: the client went away

    def next_deadline(self) -> float:
        """When :meth:`advance` has something to do without new input."""
        if self.waiting:
            return min(self._deadline(w) for w in self.waiting.values())
        return self.last_activity + self.inactivity

    def _deadline(self, waiting: _Waiting) -> float:
        return waiting.arrived + (self.wait if self._created else max(self.wait, CREATION_WAIT))

    def creation_attributes(self) -> dict[str, str]:
        """XEP-0124 §7.2 / XEP-0206 §3: what the first response tells the client."""
        attributes = {
            "sid": self.sid, "wait": str(self.wait), "requests": str(self.requests),
            "hold": str(self.hold), "inactivity": str(self.inactivity),
            "polling": str(self.polling), "ver": BOSH_VERSION,
            "xmpp_version": "1.0", "xmpp_restartlogic": "true",
        }
        if self.stream_from:
            attributes["from"] = self.stream_from
        if self.stream_id:
            attributes["authid"] = self.stream_id
        return attributes

    # internals ----------------------------------------------------------------------------

    def _answer(self, rid: int, now: float) -> None:
        waiting = self.waiting.pop(rid)
        attributes: dict[str, str] = {}
        if not self._created:
            self._created = True
            attributes = self.creation_attributes()
            if self.acks:
                attributes["ack"] = str(rid)
        elif self.acks and rid != self.highest_rid:
            attributes["ack"] = str(self.next_rid - 1)  # XEP-0124 §9.1
        response = body(self.output, **attributes)
        self._last_answer_empty = not self.output
        self.output = []
        self.responses[waiting.ticket] = response
        self.buffered[rid] = response
        while len(self.buffered) > self.requests:
            self.buffered.popitem(last=False)
        self.last_activity = now

    def _end(self, condition: str, text: str) -> BoshError:
        self.end(condition)
        return BoshError(condition, text)

    def _ticket(self) -> int:
        self._tickets += 1
        return self._tickets
