"""Server Dialback (XEP-0220) without I/O: keys, the two dialback elements, and decisions.

A server proves it speaks for a domain by handing the peer a key only the domain's
authoritative server can recompute; the peer asks that server (found through DNS for the
claimed domain) whether the key is right. Keys follow XEP-0185, so no per-stream state has to
be kept to answer a verification request:

    key = HEX(HMAC-SHA256(HEX(SHA256(secret)), receiving + " " + originating + " " + stream_id))
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from pubsubd import ns

Kind = Literal["result", "verify"]
# XEP-0220 §2.1.1: the answer to a request is one of these; "error" carries a stanza condition.
Verdict = Literal["valid", "invalid", "error"]


def new_secret() -> str:
    return secrets.token_hex(32)


def dialback_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185 §3: the key the originating server sends for one stream."""
    hashed = hashlib.sha256(secret.encode()).hexdigest().encode()
    text = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hashed, text, hashlib.sha256).hexdigest()


def key_is_valid(secret: str, receiving: str, originating: str, stream_id: str, key: str) -> bool:
    """XEP-0185 §4: recompute and compare in constant time."""
    expected = dialback_key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected.encode(), key.strip().encode())


class DialbackFormatError(ValueError):
    """A dialback element without the addressing XEP-0220 requires."""


@dataclass(frozen=True, slots=True)
class DialbackElement:
    """A ``<db:result/>`` or ``<db:verify/>`` as received."""

    kind: Kind
    from_: str
    to: str
    id: str | None  # only db:verify carries the stream id
    type: str | None  # None for a request, else valid / invalid / error
    key: str
    condition: str | None = None  # the stanza error condition of a type='error' answer

    @property
    def is_request(self) -> bool:
        return self.type is None


def parse(el: etree._Element) -> DialbackElement:
    """Read a dialback element; raise :class:`DialbackFormatError` when addressing is missing."""
    local = etree.QName(el).localname
    if etree.QName(el).namespace != ns.DIALBACK or local not in ("result", "verify"):
        raise DialbackFormatError("not a dialback element")
    from_, to = el.get("from"), el.get("to")
    if not from_ or not to:
        # XEP-0220 §2.1.1 / §2.1.2: both 'from' and 'to' MUST be present.
        raise DialbackFormatError(f"db:{local} needs 'from' and 'to'")
    id_ = el.get("id")
    if local == "verify" and not id_:
        raise DialbackFormatError("db:verify needs an 'id'")
    condition = None
    for error in el:
        if isinstance(error.tag, str) and etree.QName(error).localname == "error":
            for cond in error:
                if isinstance(cond.tag, str) and etree.QName(cond).namespace == ns.STANZAS_ERR:
                    condition = etree.QName(cond).localname
                    break
    kind: Kind = "result" if local == "result" else "verify"
    return DialbackElement(kind, from_, to, id_, el.get("type"), (el.text or "").strip(),
                           condition)


def element(kind: Kind, from_: str, to: str, *, key: str | None = None, id_: str | None = None,
            type_: Verdict | None = None, condition: str | None = None) -> bytes:
    """Serialize a dialback element with the conventional ``db`` prefix (XEP-0220 §2.4.1)."""
    nsmap: dict[str | None, str] = {"db": ns.DIALBACK}
    if condition is not None:
        nsmap[None] = ns.SERVER  # the <error/> child is in the content namespace (§2.5)
    el = etree.Element(ns.clark(ns.DIALBACK, kind), nsmap=nsmap)  # type: ignore[arg-type]
    el.set("from", from_)
    el.set("to", to)
    if id_ is not None:
        el.set("id", id_)
    if type_ is not None:
        el.set("type", type_)
    if key is not None:
        el.text = key
    if condition is not None:
        error = etree.SubElement(el, ns.clark(ns.SERVER, "error"))
        error.set("type", "cancel")
        etree.SubElement(error, ns.clark(ns.STANZAS_ERR, condition), nsmap={None: ns.STANZAS_ERR})
    return etree.tostring(el)


def answer_verify(request: DialbackElement, secret: str,
                  is_local: Callable[[str], bool]) -> bytes:
    """The authoritative server's answer to ``<db:verify/>`` (XEP-0220 §2.2.2).

    The request's 'from' is the receiving server, its 'to' the domain we speak for; 'from' and
    'to' are swapped in the answer, and the id is copied.
    """
    if not is_local(request.to):
        # XEP-0220 §2.2.2: a domain we do not host is a dialback error, not a stream error.
        return element("verify", request.to, request.from_, id_=request.id, type_="error",
                       condition="item-not-found")
    valid = key_is_valid(secret, request.from_, request.to, request.id or "", request.key)
    return element("verify", request.to, request.from_, id_=request.id,
                   type_="valid" if valid else "invalid")


# XEP-0220 §2.1.1 and §2.5: what the initiating server does with queued stanzas when a
# domain pair is refused — the stanza error condition each answer maps to.
BOUNCE_CONDITION: dict[str, str] = {
    "invalid": "internal-server-error",
    "error": "remote-server-timeout",
}


class DomainPairs:
    """Which (sender domain, target domain) pairs an incoming stream may carry stanzas for.

    XEP-0220 §2.2.1: a stream may multiplex several pairs; each is authorized on its own,
    and a stanza whose pair was never verified is refused.
    """

    def __init__(self) -> None:
        self._verified: set[tuple[str, str]] = set()
        self._pending: set[tuple[str, str]] = set()

    def __bool__(self) -> bool:
        return bool(self._verified)

    def begin(self, sender: str, target: str) -> bool:
        """Start verifying a pair; False when it is already verified or in progress."""
        pair = (sender, target)
        if pair in self._verified or pair in self._pending:
            return False
        self._pending.add(pair)
        return True

    def size(self) -> int:
        """Pairs verified or being verified (bounded by s2s.max_domain_pairs)."""
        return len(self._verified) + len(self._pending)

    def finish(self, sender: str, target: str, valid: bool) -> None:
        self._pending.discard((sender, target))
        if valid:
            self._verified.add((sender, target))

    def allows(self, sender: str, target: str) -> bool:
        return (sender, target) in self._verified

    def knows_sender(self, sender: str) -> bool:
        return any(s == sender for s, _ in self._verified)
