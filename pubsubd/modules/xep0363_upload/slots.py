"""The pure rules of HTTP File Upload: slot signatures, file names, and how files are served.

A slot is a random id (in both URLs) plus a PUT header signing what was granted: the GET URL
may be shared with a whole chat, the upload needs the header only the requester received
(XEP-0363 §4: Authorization is one of the headers a slot may carry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from urllib.parse import quote

UPLOAD = "urn:xmpp:http:upload:0"
DEFAULT_TYPE = "application/octet-stream"  # XEP-0363 §4: when the request names none
MAX_NAME = 128

# RFC 9110 §8.3.1 media type: type "/" subtype, tokens only (parameters are dropped).
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")

# Shown by a browser without running anything: served inline with their own type. Anything
# else (HTML, SVG, XML, scripts...) could run in the upload origin, so it is served as an
# attachment of type application/octet-stream.
_INLINE_PREFIXES = ("image/", "audio/", "video/")
_INLINE_TYPES = frozenset({"text/plain", "application/pdf"})
_ACTIVE_IMAGES = frozenset({"image/svg+xml"})


def new_slot_id() -> str:
    return secrets.token_urlsafe(24)


def sign(secret: bytes, slot_id: str, size: int, content_type: str) -> str:
    """The PUT authorization of a slot: binds its id, size and type."""
    message = f"{slot_id}\n{size}\n{content_type}".encode()
    return base64.urlsafe_b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def authorized(secret: bytes, slot_id: str, size: int, content_type: str,
               header: str | None) -> bool:
    expected = f"Bearer {sign(secret, slot_id, size, content_type)}"
    return header is not None and hmac.compare_digest(header.strip(), expected)


def media_type(value: str | None) -> str:
    """A syntactically valid, lower-cased media type without parameters."""
    if not value:
        return DEFAULT_TYPE
    candidate = value.split(";", 1)[0].strip().lower()
    return candidate if _MEDIA_TYPE.fullmatch(candidate) else DEFAULT_TYPE


def safe_filename(name: str) -> str:
    """The last path component, without control characters, at most MAX_NAME characters
    (the extension kept), never empty, "." or ".."."""
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    if len(base) > MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            base = stem[:MAX_NAME - len(ext) - 1] + "." + ext
        else:
            base = base[:MAX_NAME]
    return base if base.strip(".") else "file"


def url_path(slot_id: str, filename: str) -> str:
    return f"/upload/{slot_id}/{quote(filename, safe='')}"


def inline(content_type: str) -> bool:
    if content_type in _ACTIVE_IMAGES:
        return False
    return content_type in _INLINE_TYPES or content_type.startswith(_INLINE_PREFIXES)


def served_headers(content_type: str, filename: str) -> tuple[str, list[tuple[str, str]]]:
    """The Content-Type and the other headers a stored file is served with."""
    shown = inline(content_type)
    served = content_type if shown else DEFAULT_TYPE
    if served == "text/plain":
        served = "text/plain; charset=utf-8"
    # RFC 6266 §4.3: filename* carries any character, percent-encoded UTF-8.
    disposition = f"{'inline' if shown else 'attachment'}; filename*=UTF-8''{quote(filename)}"
    return served, [
        ("Content-Disposition", disposition),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", "default-src 'none'; sandbox"),
    ]
