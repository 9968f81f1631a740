"""The pure rules of HTTP File Upload (XEP-0363): signatures, names, served headers."""

from __future__ import annotations

from pubsubd.modules.xep0363_upload import slots


def test_signature_binds_id_size_and_type() -> None:
    token = slots.sign(b"k", "id", 10, "image/png")
    header = f"Bearer {token}"
    assert slots.authorized(b"k", "id", 10, "image/png", header)
    assert not slots.authorized(b"k", "id", 11, "image/png", header)
    assert not slots.authorized(b"k", "other", 10, "image/png", header)
    assert not slots.authorized(b"k", "id", 10, "text/html", header)
    assert not slots.authorized(b"other key", "id", 10, "image/png", header)
    assert not slots.authorized(b"k", "id", 10, "image/png", None)


def test_file_names_cannot_escape_or_hide() -> None:
    assert slots.safe_filename("../../etc/passwd") == "passwd"
    assert slots.safe_filename("C:\\Users\\me\\photo.jpg") == "photo.jpg"
    assert slots.safe_filename("a\x00b\nc.txt") == "abc.txt"
    assert slots.safe_filename("..") == "file" and slots.safe_filename("") == "file"
    long = slots.safe_filename("x" * 300 + ".jpeg")
    assert len(long) == slots.MAX_NAME and long.endswith(".jpeg")
    assert slots.url_path("id", "a b/é.png") == "/upload/id/a%20b%2F%C3%A9.png"


def test_media_types_are_checked() -> None:
    assert slots.media_type("Image/PNG; q=1") == "image/png"
    assert slots.media_type("text/html\r\nSet-Cookie: x") == slots.DEFAULT_TYPE
    assert slots.media_type(None) == slots.DEFAULT_TYPE
    assert slots.media_type("nonsense") == slots.DEFAULT_TYPE


def test_only_passive_types_are_shown_inline() -> None:
    assert slots.served_headers("image/jpeg", "p.jpg")[0] == "image/jpeg"
    assert slots.served_headers("text/plain", "n.txt")[0] == "text/plain; charset=utf-8"
    for active in ("text/html", "image/svg+xml", "application/javascript", "text/xml",
                   "application/xhtml+xml"):
        served, headers = slots.served_headers(active, "f")
        assert served == slots.DEFAULT_TYPE
        assert dict(headers)["Content-Disposition"].startswith("attachment;")
    _, headers = slots.served_headers("video/mp4", "clip é.mp4")
    assert dict(headers)["Content-Disposition"] == "inline; filename*=UTF-8''clip%20%C3%A9.mp4"
    assert dict(headers)["X-Content-Type-Options"] == "nosniff"
