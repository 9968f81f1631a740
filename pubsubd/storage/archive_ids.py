"""Archive ids (XEP-0313 §3, XEP-0359 §3): unique, unpredictable, and carrying their position.

An id is 20 URL-safe characters: a sequence number (7 bytes) then 8 bytes from the operating
system's CSPRNG. The random part makes it unpredictable (XEP-0313 §3: "MUST be unpredictable");
the sequence number in front is the microsecond the id was drawn, moved on by one when ids are
drawn faster than the clock, so ids of one process strictly grow and sort in the order they
were given. A store reads the position back with :func:`seq_of` and finds a message by its
primary key instead of keeping an index of ids (a store still checks the whole id, so a guess
of the position alone finds nothing).

Ids are drawn on the event loop's thread (one generator gives them all out).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable, Iterator

_SEQ_BYTES = 7
_BATCH = 256  # ids' worth of random bytes drawn from the system's random source at once
_BATCH_BYTES = 9  # random bytes drawn per id: 12 base64 characters, of which 64 bits are used
_TEXT_PER_ID = 12
_LENGTH = 20  # characters of an id: (7 + 8) bytes in base64
# base64's alphabet permuted into ASCII order, so that ids sort as their bytes do.
_SORTABLE = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_TO_SORTABLE = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", _SORTABLE)
_FROM_SORTABLE = bytes.maketrans(
    _SORTABLE, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_ALPHABET = _SORTABLE.decode("ascii")
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # the 12 bits of two characters
# The two characters of a seq's low 8 bits then 4 random bits, by the random bits, by the byte.
_LOWS = [[_PAIRS[byte << 4 | nibble] for byte in range(256)] for nibble in range(16)]


def _encode(value: int, chars: int) -> str:
    """``value``'s low ``6 * chars`` bits as characters of the sortable alphabet."""
    return "".join(_ALPHABET[(value >> shift) & 63] for shift in range(6 * chars - 6, -1, -6))


def _ids() -> Iterator[tuple[int, str]]:
    """Every id of the process with its sequence number; see the module docstring.

    A generator, whose state lives in local variables: cheaper to resume than globals are to
    read and write. An id is put together from pieces of text made in bulk rather than
    encoded on its own. In bits, an id is the sequence number's 56 then the 64 random ones,
    6 to a character: the first 8 characters (the sequence number's top 48 bits) change
    every 256 microseconds at most; the next two carry its low 8 bits and 4 random bits; the
    last 10 characters are the 60 other random bits, cut from one base64 text per batch."""
    clock = time.time_ns
    pairs = _PAIRS
    last = high = top = -1
    head = top_text = ""
    while True:
        raw = secrets.token_bytes(_BATCH_BYTES * _BATCH)
        text = base64.b64encode(raw).translate(_TO_SORTABLE).decode("ascii")
        # 12 characters per id: the first two (made of the byte the 4 bits come from) unused.
        tails = [text[i:i + 10] for i in range(2, _TEXT_PER_ID * _BATCH, _TEXT_PER_ID)]
        # Per id, the 16 texts its low seq byte may pick: its 4 random bits already in.
        lows = [_LOWS[b & 15] for b in raw[::_BATCH_BYTES]]
        for low, tail in zip(lows, tails, strict=True):
            seq = clock() // 1000
            if seq <= last:
                seq = last + 1
            last = seq
            if seq >> 8 != high:
                high = seq >> 8
                if high >> 12 != top:  # about once a second
                    top = high >> 12
                    top_text = _encode(top, 6)
                head = top_text + pairs[high & 0xFFF]
            yield seq, f"{head}{low[seq & 0xFF]}{tail}"


next_id: Callable[[], tuple[int, str]] = _ids().__next__
"""A fresh archive id and the sequence number it carries (what :func:`seq_of` reads back),
which is also the microsecond it was drawn (moved on by one on ties): a message's stamp."""


def new_uid() -> str:
    """A fresh archive id; see the module docstring."""
    return next_id()[1]


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
