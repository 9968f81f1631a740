"""Archive ids (XEP-0313 §3, XEP-0359 §3): unique, unpredictable, and carrying their position.

An id is 20 URL-safe characters: a sequence number (7 bytes) then 8 bytes from the operating
system's CSPRNG. The random part makes it unpredictable (XEP-0313 §3: "MUST be unpredictable");
the sequence number in front is the microsecond the id was drawn, moved on by one when ids are
drawn faster than the clock, so ids of one process strictly grow and sort in the order they
were given. A store reads the position back with :func:`seq_of` and finds a message by its
primary key instead of keeping an index of ids (a store still checks the whole id, so a guess
of the position alone finds nothing).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time

_SEQ_BYTES = 7
_RANDOM = 8  # random bytes in an id: 64 bits nobody can guess
_BATCH = 256  # ids' worth of random bytes drawn from the system's random source at once
_LENGTH = 20  # characters of an id: (7 + 8) bytes in base64
# base64's alphabet permuted into ASCII order, so that ids sort as their bytes do.
_TO_SORTABLE = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
_FROM_SORTABLE = bytes.maketrans(
    b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

_random = b""
_offset = 0
_last = 0


def new_uid() -> str:
    """A fresh archive id; see the module docstring."""
    global _random, _offset, _last
    offset = _offset
    if offset >= len(_random):
        # One system call per batch: one per message was a visible share of archiving a chat.
        _random = secrets.token_bytes(_RANDOM * _BATCH)
        offset = 0
    _offset = offset + _RANDOM
    seq = time.time_ns() // 1000
    if seq <= _last:
        seq = _last + 1
    _last = seq
    raw = seq.to_bytes(_SEQ_BYTES, "big") + _random[offset:offset + _RANDOM]
    return base64.b64encode(raw).translate(_TO_SORTABLE).decode("ascii")


def seq_of(uid: str) -> int | None:
    """The sequence number at the front of an id made by :func:`new_uid`; None for any other
    text (ids of older versions, ids a test chose). Any 20-character id of the right alphabet
    decodes to some number: a store must still compare the whole id."""
    if len(uid) != _LENGTH or not uid.isascii():
        return None
    try:
        raw = base64.b64decode(uid.encode("ascii").translate(_FROM_SORTABLE), validate=True)
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw[:_SEQ_BYTES], "big")
