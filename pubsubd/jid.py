"""The JID value type: parsing and PRECIS/IDNA preparation per RFC 7622.

A :class:`JID` only ever holds prepared (enforced) parts, so equality and hashing are
plain field comparisons: two spellings of one address compare equal once parsed
(RFC 7622 §3.2.3, §3.3, §3.4 — comparison after enforcement is bit-string identity).
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass, field
from functools import lru_cache

import idna
from precis_i18n import get_profile

__all__ = ["JID", "InvalidJID"]

_MAX_PART_OCTETS = 1023  # RFC 7622 §3.1: each part is 1..1023 octets after preparation
_LOCALPART_PROFILE = get_profile("UsernameCaseMapped")  # RFC 7622 §3.3
_RESOURCEPART_PROFILE = get_profile("OpaqueString")  # RFC 7622 §3.4
# RFC 7622 §3.3.1: allowed by PRECIS IdentifierClass but not in XMPP localparts.
_FORBIDDEN_LOCAL_CHARS = frozenset("\"&'/:<>@")
_LDH = frozenset(string.ascii_lowercase + string.digits + "-")


class InvalidJID(ValueError):
    """The string is not a JID; the message says which rule it breaks."""


def _check_length(part: str, what: str) -> str:
    size = len(part.encode("utf-8"))
    if size == 0:
        raise InvalidJID(f"empty {what}")
    if size > _MAX_PART_OCTETS:
        raise InvalidJID(f"{what} longer than {_MAX_PART_OCTETS} octets")
    return part


def prepare_localpart(local: str) -> str:
    """Enforce UsernameCaseMapped and the XMPP-specific exclusions (RFC 7622 §3.3)."""
    if not local:
        raise InvalidJID("empty localpart")
    bad = _FORBIDDEN_LOCAL_CHARS.intersection(local)
    if bad:
        raise InvalidJID(f"localpart contains forbidden character {sorted(bad)[0]!r}")
    try:
        prepared: str = _LOCALPART_PROFILE.enforce(local)
    except UnicodeError as exc:
        raise InvalidJID(f"localpart not allowed by PRECIS UsernameCaseMapped: {exc}") from None
    # Enforcement may map other code points onto the excluded ones (width mapping).
    if _FORBIDDEN_LOCAL_CHARS.intersection(prepared):
        raise InvalidJID("localpart maps to a forbidden character")
    return _check_length(prepared, "localpart")


def prepare_resourcepart(resource: str) -> str:
    """Enforce the OpaqueString profile (RFC 7622 §3.4)."""
    if not resource:
        raise InvalidJID("empty resourcepart")
    if resource[0] == " " or resource[-1] == " ":
        # RFC 7622 §3.5 Table 2, example 18 lists a leading space as not a JID.
        raise InvalidJID("resourcepart starts or ends with a space")
    try:
        prepared: str = _RESOURCEPART_PROFILE.enforce(resource)
    except UnicodeError as exc:
        raise InvalidJID(f"resourcepart not allowed by PRECIS OpaqueString: {exc}") from None
    if prepared[0] == " " or prepared[-1] == " ":
        # OpaqueString maps other spaces (U+00A0...) to U+0020: check the result as well, or
        # the prepared JID would not parse again.
        raise InvalidJID("resourcepart starts or ends with a space")
    return _check_length(prepared, "resourcepart")


def _is_plain_ldh_name(domain: str) -> bool:
    """True for an ASCII hostname needing no IDNA work: the common case, kept fast."""
    for label in domain.split("."):
        if not label or len(label) > 63 or not _LDH.issuperset(label):
            return False
        if label[0] == "-" or label[-1] == "-" or label.startswith("xn--"):
            return False
    return True


def prepare_domainpart(domain: str) -> str:
    """Prepare and enforce a domainpart (RFC 7622 §3.2).

    IP literals are kept in canonical textual form; names are mapped (case, width, NFC)
    per UTS 46 / IDNA2008 and stored as U-labels, since §3.2.1 forbids A-labels in the slot.
    """
    # RFC 7622 §3.2: strip one trailing label separator before any canonicalization.
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise InvalidJID("empty domainpart")
    if domain.startswith("["):
        # RFC 7622 §3.1: IP-literal per RFC 3986 / RFC 6874 (IPv6 in square brackets).
        if not domain.endswith("]"):
            raise InvalidJID("unterminated IPv6 literal in domainpart")
        try:
            address = ipaddress.IPv6Address(domain[1:-1])
        except ValueError:
            raise InvalidJID("invalid IPv6 literal in domainpart") from None
        return f"[{address.compressed}]"
    lowered = domain.lower() if domain.isascii() else domain
    if _is_plain_ldh_name(lowered):
        return _check_length(lowered, "domainpart")
    try:
        return _check_length(str(ipaddress.IPv4Address(domain)), "domainpart")
    except ValueError:
        pass
    try:
        u_labels = idna.decode(idna.encode(domain, uts46=True))
    except idna.IDNAError as exc:
        raise InvalidJID(f"domainpart is not a valid IDNA name: {exc}") from None
    except UnicodeError as exc:  # labels too long or empty, reported by the codec
        raise InvalidJID(f"domainpart is not a valid domain name: {exc}") from None
    return _check_length(u_labels, "domainpart")


@dataclass(frozen=True, slots=True)
class JID:
    """An XMPP address whose parts are already prepared.

    Build one with :meth:`parse` or :meth:`from_parts`; the plain constructor trusts its
    arguments and exists for code that copies parts from another JID.
    """

    local: str | None
    domain: str
    resource: str | None = None
    # The bare form of a full JID, built on first use and kept: routing and session lookups
    # ask for it on every stanza. Not part of equality, hashing or repr.
    _bare: JID | None = field(default=None, init=False, repr=False, compare=False)
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        # A JID keys the session registry, the delivery ledger and routing caches: its hash
        # is computed once (the fields never change).
        found = self._hash
        if found is None:
            found = hash((self.local, self.domain, self.resource))
            object.__setattr__(self, "_hash", found)
        return found

    def __reduce__(self) -> tuple[type[JID], tuple[str | None, str, str | None]]:
        # Pickled without the caches: string hashes differ from one process to another.
        return (JID, (self.local, self.domain, self.resource))

    @staticmethod
    def parse(text: str) -> JID:
        """Parse and prepare ``text``; raises :class:`InvalidJID` saying why it is not a JID."""
        return _parse_cached(text)

    @staticmethod
    def from_parts(local: str | None, domain: str, resource: str | None = None) -> JID:
        """Prepare each part separately (for parts that did not come as one string)."""
        return JID(
            prepare_localpart(local) if local is not None else None,
            prepare_domainpart(domain),
            prepare_resourcepart(resource) if resource is not None else None,
        )

    @property
    def bare(self) -> JID:
        """``local@domain`` without the resource."""
        found = self._bare
        if found is None:
            if self.resource is None:
                return self
            found = JID(self.local, self.domain, None)
            object.__setattr__(self, "_bare", found)  # a cache: the value stays immutable
        return found

    @property
    def domain_jid(self) -> JID:
        """The domainpart alone, e.g. the server an account lives on."""
        if self.local is None and self.resource is None:
            return self
        return JID(None, self.domain, None)

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    @property
    def is_full(self) -> bool:
        return self.resource is not None

    def with_resource(self, resource: str | None) -> JID:
        """This address with another resourcepart (prepared), or none for ``None``."""
        prepared = prepare_resourcepart(resource) if resource is not None else None
        return JID(self.local, self.domain, prepared)

    def __str__(self) -> str:
        text = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return text if self.resource is None else f"{text}/{self.resource}"


@lru_cache(maxsize=8192)
def _parse_cached(text: str) -> JID:
    # RFC 7622 §3.1 note: split on the separators before any transformation, and
    # §3.2: the resourcepart starts at the first '/', the localpart ends at the first '@'
    # before it (so "a.example.com/b@example.net" has no localpart).
    if not isinstance(text, str):
        raise InvalidJID("a JID must be a string")
    head, slash, resource = text.partition("/")
    local, at, domain = head.partition("@")
    if not at:
        local, domain = "", head
    if at and not local:
        raise InvalidJID("empty localpart")
    if slash and not resource:
        raise InvalidJID("empty resourcepart")
    return JID(
        prepare_localpart(local) if at else None,
        prepare_domainpart(domain),
        prepare_resourcepart(resource) if slash else None,
    )
