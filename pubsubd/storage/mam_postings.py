"""The postings of a message archive: which messages it holds, in archive order.

An archive is listed by rows of postings, each the (seq, stamp, other party) of some of its
messages, with larger seqs than the row before. A row keeps them as columns: seqs and stamps
as packed 64-bit integers, the other parties' addresses as one text, a line each (addresses
hold no control characters: RFC 7622 §3.2-3.4 via PRECIS). So a query over an archive of ten
thousand messages reads them in microseconds, and looks at the addresses only when it filters
by them (XEP-0313 §4.1.1).
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_BIG_ENDIAN = sys.byteorder == "big"


def pack(values: Sequence[int]) -> bytes:
    """``values`` as little-endian 64-bit integers (the database file is portable)."""
    packed = array("q", values)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def unpack(blob: bytes, into: array[int] | None = None) -> array[int]:
    """The integers :func:`pack` wrote, appended to ``into`` if given."""
    values = array("q")
    values.frombytes(blob)
    if _BIG_ENDIAN:
        values.byteswap()
    if into is None:
        return values
    into.extend(values)
    return into


@dataclass(slots=True)
class NewEntries:
    """Entries gathered for one archive before they are written as (part of) a row."""

    seqs: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)

    def add(self, seq: int, stamp: int, contact: str) -> None:
        self.seqs.append(seq)
        self.stamps.append(stamp)
        self.contacts.append(contact)

    def encoded(self) -> tuple[bytes, bytes, str]:
        """The three columns of a row holding these entries."""
        seqs = pack(self.seqs)
        # The stamp of a message the server archived as it routed it is its seq.
        stamps = seqs if self.stamps == self.seqs else pack(self.stamps)
        return seqs, stamps, "\n".join(self.contacts)


@dataclass(slots=True)
class Postings:
    """The entries of an archive (or of some of its rows), in seq order."""

    seqs: array[int] = field(default_factory=lambda: array("q"))
    stamps: array[int] = field(default_factory=lambda: array("q"))
    _texts: list[str] = field(default_factory=list)
    _contacts: list[str] | None = None

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[bytes, bytes, str]]) -> Postings:
        """Rows' (seqs, stamps, contacts) columns, read in the order of their seqs."""
        found = cls()
        for seqs, stamps, contacts in rows:
            unpack(seqs, found.seqs)
            unpack(stamps, found.stamps)
            found._texts.append(contacts)
        return found

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def contacts(self) -> list[str]:
        """The other party of each entry (decoded on first use)."""
        if self._contacts is None:
            texts = self._texts
            self._contacts = "\n".join(texts).split("\n") if texts else []
        return self._contacts

    def tail(self, after: int) -> tuple[bytes, bytes, str]:
        """The encoded columns of the entries past seq ``after``."""
        start = bisect.bisect_right(self.seqs, after)
        return (pack(self.seqs[start:]), pack(self.stamps[start:]),
                "\n".join(self.contacts[start:]))

    def select(self, *, with_bare: str | None = None, with_full: str | None = None,
               start: int | None = None, end: int | None = None, after: int | None = None,
               before: int | None = None, wanted: set[int] | None = None) -> Sequence[int]:
        """The seqs of the entries that pass every filter given (XEP-0313 §4.1: ``start`` and
        ``end`` inclusive stamps, ``after``/``before`` exclusive seqs), in order."""
        seqs = self.seqs
        low = 0 if after is None else bisect.bisect_right(seqs, after)
        high = len(seqs) if before is None else bisect.bisect_left(seqs, before)
        if (with_bare is None and with_full is None and start is None and end is None
                and wanted is None):
            return seqs[low:high]
        stamps = self.stamps
        contacts = self.contacts if with_bare is not None or with_full is not None else None
        prefix = with_bare + "/" if with_bare is not None else ""
        found = []
        for i in range(low, high):
            if start is not None and stamps[i] < start:
                continue
            if end is not None and stamps[i] > end:
                continue
            if contacts is not None:
                contact = contacts[i]
                if with_full is not None and contact != with_full:
                    continue
                # The bare JID is the text before the first '/' (RFC 7622 §3.1).
                if with_bare is not None and contact != with_bare \
                        and not contact.startswith(prefix):
                    continue
            if wanted is not None and seqs[i] not in wanted:
                continue
            found.append(seqs[i])
        return found
