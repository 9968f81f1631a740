"""HTML from feeds: a whitelist sanitizer and a plain-text rendering.

Feed HTML is written by strangers and shown by chat clients, so only known-harmless markup
survives: unknown elements are unwrapped (their text kept), dangerous ones dropped with their
content, attributes kept only from a per-element list, and URLs only with a safe scheme, made
absolute against the entry's base so they still work out of context.
"""

from __future__ import annotations

import html as html_module
import re
from urllib.parse import urljoin, urlsplit

from lxml import etree
from lxml import html as lxml_html

ALLOWED_TAGS = frozenset(
    """a abbr acronym address b bdi bdo big blockquote br caption cite code col colgroup dd del
    details dfn div dl dt em figcaption figure h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p
    pre q rp rt ruby s samp small span strike strong sub summary sup table tbody td tfoot th
    thead time tr tt u ul var audio video source track picture""".split()
)
DROP_WITH_CONTENT = frozenset(
    """script style iframe frame frameset object embed applet noscript template form input
    button select textarea option link meta base head title svg math canvas dialog""".split()
)
COMMON_ATTRS = frozenset({"title", "lang", "dir"})
TAG_ATTRS: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "hreflang", "rel"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "blockquote": frozenset({"cite"}),
    "q": frozenset({"cite"}),
    "del": frozenset({"cite", "datetime"}),
    "ins": frozenset({"cite", "datetime"}),
    "time": frozenset({"datetime"}),
    "td": frozenset({"colspan", "rowspan", "align"}),
    "th": frozenset({"colspan", "rowspan", "align", "scope"}),
    "col": frozenset({"span"}),
    "ol": frozenset({"start", "type", "reversed"}),
    "abbr": frozenset({"title"}),
    "audio": frozenset({"src", "controls"}),
    "video": frozenset({"src", "controls", "poster", "width", "height"}),
    "source": frozenset({"src", "type"}),
    "track": frozenset({"src", "kind", "srclang", "label"}),
}
URL_ATTRS = frozenset({"href", "src", "cite", "poster"})
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "ftp", "xmpp", "tel"})
BLOCK_TAGS = frozenset(
    "p div br li tr h1 h2 h3 h4 h5 h6 blockquote pre ul ol dl dt dd table hr figure".split()
)
_CONTROLS = re.compile("[\x00-\x1f]")
_WITH_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")  # scheme "://" (RFC 3986 §3)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")


def xml_safe(text: str) -> str:
    """Remove characters XML 1.0 cannot carry (control characters, lone surrogates)."""
    return _XML_INVALID.sub("", text)


def safe_url(url: str, base: str) -> str | None:
    """``url`` made absolute, or None when its scheme could run code (javascript:, data:...)."""
    url = _CONTROLS.sub("", url.strip())  # browsers ignore embedded controls
    if not url:
        return None
    absolute_already = _WITH_AUTHORITY.match(url)
    if absolute_already:
        # urljoin would hand it back as it is, only much more slowly (it is per link).
        absolute, scheme = url, absolute_already.group(1).lower()
    else:
        absolute = urljoin(base, url) if base else url
        scheme = urlsplit(absolute).scheme.lower()
    if scheme:
        return absolute if scheme in SAFE_SCHEMES else None
    return absolute  # still relative (no base known): harmless


def _fragment(markup: str) -> etree._Element | None:
    markup = xml_safe(markup)
    if not markup.strip():
        return None
    try:
        return lxml_html.fragment_fromstring(markup, create_parent="div")
    except (etree.ParserError, ValueError):
        return None


def sanitize(markup: str, base: str = "") -> str:
    """Whitelist-clean an HTML fragment and resolve its links against ``base``."""
    root = _fragment(markup)
    if root is None:
        return ""
    for node in list(root.iter()):
        if node is root:
            continue
        if not isinstance(node.tag, str):  # comments, processing instructions
            node.drop_tree()
            continue
        tag = node.tag.lower()
        if tag in DROP_WITH_CONTENT:
            node.drop_tree()
            continue
        if tag not in ALLOWED_TAGS:
            node.drop_tag()
            continue
        allowed = COMMON_ATTRS | TAG_ATTRS.get(tag, frozenset())
        for name in list(node.attrib):
            value = node.attrib[name]
            if name.lower() not in allowed:
                del node.attrib[name]
            elif name.lower() in URL_ATTRS:
                url = safe_url(value, base)
                if url is None:
                    del node.attrib[name]
                else:
                    node.attrib[name] = url
        if tag == "a" and "href" in node.attrib:
            node.attrib["rel"] = "nofollow noopener"
    out = html_module.escape(root.text or "", quote=False)
    for child in root:
        out += lxml_html.tostring(child, encoding="unicode")
    return out.strip()


def to_text(markup: str) -> str:
    """Readable plain text of an HTML fragment: tags gone, entities decoded, blocks on lines."""
    root = _fragment(markup)
    if root is None:
        return ""
    for node in list(root.iter()):
        if node is root:
            continue
        if not isinstance(node.tag, str) or node.tag.lower() in DROP_WITH_CONTENT:
            node.drop_tree()
        elif node.tag.lower() in BLOCK_TAGS:
            node.tail = "\n" + (node.tail or "")
    text = _SPACES.sub(" ", root.text_content())
    return _BLANK_LINES.sub("\n", text).strip()


def one_line(text: str) -> str:
    return " ".join(text.split())


def truncate(text: str, limit: int) -> str:
    """Cut plain text at a word boundary so it fits ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"
