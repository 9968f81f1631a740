from __future__ import annotations

from feeds.html import safe_url, sanitize, to_text, truncate


def test_sanitize_keeps_safe_markup_and_drops_the_rest() -> None:
    dirty = (
        '<div onmouseover="x()"><p class="c">Text <b>bold</b> <a href="javascript:evil()">j</a>'
        '<a href=" JaVaScRiPt:evil()">k</a><a href="/ok" target="_blank">ok</a></p>'
        "<script>s()</script><style>b{}</style><iframe src='//x'></iframe>"
        "<!-- comment --><blink>unwrapped</blink><img src='data:image/png;base64,AA' alt='d'>"
        "<form><input value='x'></form></div>tail"
    )
    clean = sanitize(dirty, "https://base.example/dir/page")
    for bad in ("script", "style", "iframe", "onmouseover", "javascript", "class=", "comment",
                "blink", "data:", "form", "input", "target"):
        assert bad not in clean.lower(), bad
    assert "<b>bold</b>" in clean and "unwrapped" in clean and clean.endswith("tail")
    assert 'href="https://base.example/ok"' in clean


def test_safe_url() -> None:
    assert safe_url("../a", "http://h/x/y") == "http://h/a"
    assert safe_url("java\nscript:alert(1)", "") is None
    assert safe_url("mailto:a@b", "") == "mailto:a@b"


def test_to_text_decodes_entities_and_separates_blocks() -> None:
    assert to_text("<p>a &amp; b</p><p>c&nbsp;d</p><script>x</script>") == "a & b\nc d"


def test_truncate_on_words() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("alpha beta gamma delta", 14)
    assert cut == "alpha beta…" and len(cut) <= 14
