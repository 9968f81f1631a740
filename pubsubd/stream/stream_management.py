"""XEP-0198 Stream Management, sans I/O: the counters, the unacknowledged queue, the decisions.

The connection feeds this object what crosses the wire (a stanza received, a stanza sent, an
``<a/>`` from the peer) and sends the bytes it is given back; nothing here touches a socket or a
clock, so acks, wrap-around and resumption bookkeeping are tested without one.
"""

from __future__ import annotations

import secrets
from collections import deque

from pubsubd import ns
from pubsubd.errors import StreamCondition, StreamError

# XEP-0198 §4: 'h' is an xs:unsignedInt; it wraps from 2^32-1 back to zero.
MODULUS = 2**32
# How many unacknowledged stanzas we send before asking the client for an ack (§4 lets either
# party request at any time; a small batch keeps the queue short without an <r/> per stanza).
REQUEST_EVERY = 5

_STANZA_STARTS = (b"<message", b"<presence", b"<iq")


class HandledCountTooHigh(Exception):
    """The peer acknowledged more stanzas than we sent (XEP-0198 §6): a stream error follows."""

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(f"You acknowledged {h} stanzas, but I only sent you {send_count} so far.")
        self.h = h
        self.send_count = send_count

    def app_element(self) -> bytes:
        """The application-specific condition that goes with <undefined-condition/>."""
        return (f"<handled-count-too-high xmlns='{ns.SM}' h='{self.h}' "
                f"send-count='{self.send_count}'/>").encode()


class HandledCountError(StreamError):
    """<undefined-condition/> with <handled-count-too-high/> (XEP-0198 §6, Example 17)."""

    def __init__(self, cause: HandledCountTooHigh) -> None:
        super().__init__(StreamCondition.UNDEFINED_CONDITION, str(cause))
        self.app = cause.app_element()

    def to_bytes(self) -> bytes:
        condition = f"<{self.condition.value} xmlns='{ns.STREAMS_ERR}'/>".encode()
        return super().to_bytes().replace(condition, condition + self.app, 1)


def parse_h(value: str | None) -> int:
    """An 'h' attribute as an unsignedInt; ValueError when absent or out of range."""
    if value is None or not value.strip().isdigit():
        raise ValueError(f"invalid h: {value!r}")
    h = int(value)
    if h >= MODULUS:
        raise ValueError(f"h out of range: {h}")
    return h


def is_stanza(data: bytes) -> bool:
    """True for a serialized stanza; SM elements and whitespace share the outbox but are not
    counted (XEP-0198 §1: "not counted or acked in stream management")."""
    for start in _STANZA_STARTS:
        if data.startswith(start):
            return data[len(start):len(start) + 1] in (b" ", b">", b"/", b"\t", b"\n", b"\r")
    return False


def new_sm_id() -> str:
    """An unguessable SM-ID (XEP-0198 §5): possession of it, with the account, resumes."""
    return secrets.token_urlsafe(24)


class StreamManagement:
    """One stream management "session": it outlives connections when resumed (§5)."""

    def __init__(self, *, max_unacked: int, sm_id: str | None = None,
                 request_every: int = REQUEST_EVERY) -> None:
        self.id = sm_id  # None: acks only, no resumption
        self.max_unacked = max_unacked
        self.request_every = request_every
        self.inbound = 0  # 'h' we report: stanzas received and handled
        self.outbound = 0  # stanzas sent (mod 2^32)
        self.acked = 0  # last 'h' the peer reported
        self.unacked: deque[bytes] = deque()
        self._since_request = 0

    @property
    def resumable(self) -> bool:
        return self.id is not None

    # --- inbound ---------------------------------------------------------------------------

    def stanza_received(self) -> None:
        self.inbound = (self.inbound + 1) % MODULUS

    def ack(self) -> bytes:
        """The <a/> answering an <r/> (§4: MUST answer, as soon as possible)."""
        return f"<a xmlns='{ns.SM}' h='{self.inbound}'/>".encode()

    # --- outbound --------------------------------------------------------------------------

    def stanza_sent(self, data: bytes) -> bool:
        """Record a stanza about to be written; True when an <r/> should follow it."""
        self.unacked.append(data)
        self.outbound = (self.outbound + 1) % MODULUS
        self._since_request += 1
        if self._since_request >= self.request_every:
            self._since_request = 0
            return True
        return False

    @property
    def overflowing(self) -> bool:
        """Too many stanzas the client never acknowledged: it is cut off, not buffered forever."""
        return len(self.unacked) > self.max_unacked

    def acknowledged(self, h: int) -> int:
        """Release the stanzas the peer's 'h' covers; return how many (wrap-around aware)."""
        return len(self.release(h))

    def release(self, h: int) -> list[bytes]:
        """Release the stanzas the peer's 'h' covers and return them, oldest first."""
        newly = (h - self.acked) % MODULUS
        if newly > len(self.unacked):
            raise HandledCountTooHigh(h, self.outbound)
        released = [self.unacked.popleft() for _ in range(newly)]
        self.acked = h
        return released

    @staticmethod
    def request() -> bytes:
        return f"<r xmlns='{ns.SM}'/>".encode()

    # --- negotiation answers ---------------------------------------------------------------

    def enabled(self, max_seconds: int) -> bytes:
        """§3/§5: id and resume='true' only when the stream may be resumed."""
        if self.id is None:
            return f"<enabled xmlns='{ns.SM}'/>".encode()
        return (f"<enabled xmlns='{ns.SM}' id='{self.id}' resume='true' "
                f"max='{max_seconds}'/>").encode()

    def resumed(self) -> bytes:
        """§5: our 'h' (stanzas received from the client) and the SM-ID resumed."""
        return f"<resumed xmlns='{ns.SM}' h='{self.inbound}' previd='{self.id}'/>".encode()


def failed(condition: str) -> bytes:
    """§6: <failed/> carries one stanza error condition."""
    return f"<failed xmlns='{ns.SM}'><{condition} xmlns='{ns.STANZAS_ERR}'/></failed>".encode()
