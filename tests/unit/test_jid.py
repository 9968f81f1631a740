from __future__ import annotations

import pickle

import pytest

from pubsubd.jid import JID, InvalidJID, prepare_resourcepart

# RFC 7622 §3.5, Table 1: legal JIDs, with their expected (local, domain, resource).
LEGAL = [
    ("juliet@example.com", ("juliet", "example.com", None)),
    ("juliet@example.com/foo", ("juliet", "example.com", "foo")),
    ("juliet@example.com/foo bar", ("juliet", "example.com", "foo bar")),
    ("juliet@example.com/foo@bar", ("juliet", "example.com", "foo@bar")),
    ("foo\\20bar@example.com", ("foo\\20bar", "example.com", None)),
    ("fussball@example.com", ("fussball", "example.com", None)),
    ("fu\u00dfball@example.com", ("fu\u00dfball", "example.com", None)),
    ("\u03c0@example.com", ("\u03c0", "example.com", None)),
    ("\u03a3@example.com/foo", ("\u03c3", "example.com", "foo")),
    ("\u03c3@example.com/foo", ("\u03c3", "example.com", "foo")),
    ("\u03c2@example.com/foo", ("\u03c2", "example.com", "foo")),
    ("king@example.com/\u265a", ("king", "example.com", "\u265a")),
    ("example.com", (None, "example.com", None)),
    ("example.com/foobar", (None, "example.com", "foobar")),
    ("a.example.com/b@example.net", (None, "a.example.com", "b@example.net")),
]

# RFC 7622 §3.5, Table 2: strings that are not JIDs.
ILLEGAL = [
    '"juliet"@example.com',
    "foo bar@example.com",
    "juliet@example.com/ foo",
    "@example.com/",
    "henry\u2163@example.com",
    "\u265a@example.com",
    "juliet@",
    "/foobar",
]


@pytest.mark.parametrize(("text", "parts"), LEGAL)
def test_rfc7622_legal_examples(text: str, parts: tuple[str | None, str, str | None]) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == parts


@pytest.mark.parametrize("text", ILLEGAL)
def test_rfc7622_illegal_examples(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


def test_sigma_case_mapping_matches_only_non_final_sigma() -> None:
    # RFC 7622 §3.5 notes on examples 9-11.
    assert JID.parse("\u03a3@example.com/foo") == JID.parse("\u03c3@example.com/foo")
    assert JID.parse("\u03c2@example.com/foo") != JID.parse("\u03c3@example.com/foo")


def test_localpart_and_domain_are_case_folded_resource_is_not() -> None:
    a = JID.parse("Juliet@EXAMPLE.com/Balcony")
    b = JID.parse("juliet@example.com/Balcony")
    assert a == b and hash(a) == hash(b)
    assert str(a) == "juliet@example.com/Balcony"
    assert JID.parse("juliet@example.com/balcony") != a


@pytest.mark.parametrize("char", list("\"&':<>"))
def test_forbidden_localpart_characters(char: str) -> None:
    with pytest.raises(InvalidJID, match="forbidden"):
        JID.parse(f"a{char}b@example.com")


@pytest.mark.parametrize("local", ["a@b", "a/b", "a\uff1cb"])
def test_forbidden_localpart_characters_in_separate_parts(local: str) -> None:
    # '@' and '/' can only reach a localpart given on its own; U+FF1C width-maps to '<'.
    with pytest.raises(InvalidJID, match="forbidden"):
        JID.from_parts(local, "example.com")


def test_slash_splits_before_at() -> None:
    # RFC 7622 §3.2: the resource starts at the first '/', even if an '@' follows.
    assert JID.parse("a/b@example.com") == JID(None, "a", "b@example.com")


def test_domain_trailing_dot_width_and_idna() -> None:
    assert JID.parse("juliet@example.com.").domain == "example.com"
    # Full-width letters are width-mapped (RFC 5892 rules per RFC 7622 §3.2.2).
    assert JID.parse("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com").domain == "example.com"
    # A-labels become U-labels (RFC 7622 §3.2.1).
    assert JID.parse("xn--bcher-kva.example").domain == "b\u00fccher.example"
    assert JID.parse("B\u00dcCHER.example") == JID.parse("xn--bcher-kva.example")
    with pytest.raises(InvalidJID, match="IDNA|domain"):
        JID.parse("exa mple.com")


def test_ip_literals() -> None:
    assert JID.parse("juliet@[::1]/r").domain == "[::1]"
    assert JID.parse("[0:0::1]").domain == "[::1]"
    assert JID.parse("127.0.0.1").domain == "127.0.0.1"
    with pytest.raises(InvalidJID, match="IPv6"):
        JID.parse("[nonsense]")


def test_length_limits_are_octets() -> None:
    JID.parse("a" * 1023 + "@example.com")
    with pytest.raises(InvalidJID, match="1023"):
        JID.parse("a" * 1024 + "@example.com")
    # 512 two-octet characters are 1024 octets.
    with pytest.raises(InvalidJID, match="1023"):
        JID.parse("example.com/" + "\u00e9" * 512)
    JID.parse("example.com/" + "\u00e9" * 511)


def test_bare_domain_with_resource_and_str() -> None:
    full = JID.parse("juliet@example.com/balcony")
    assert full.is_full and not full.is_bare
    assert full.bare == JID.parse("juliet@example.com")
    assert full.bare.is_bare
    assert full.domain_jid == JID.parse("example.com")
    assert str(full.domain_jid) == "example.com"
    assert full.bare.with_resource("orchard") == JID.parse("juliet@example.com/orchard")
    assert full.with_resource(None) == full.bare
    with pytest.raises(InvalidJID):
        full.with_resource("")
    assert {full, JID.parse("Juliet@Example.COM/balcony")} == {full}


def test_from_parts_prepares_each_part() -> None:
    assert JID.from_parts("Juliet", "Example.com", "r") == JID.parse("juliet@example.com/r")
    # The domain here holds '@' only because parts were given separately: rejected.
    with pytest.raises(InvalidJID):
        JID.from_parts(None, "a@b.com")


def test_parse_is_cached() -> None:
    assert JID.parse("cache@example.com") is JID.parse("cache@example.com")


@pytest.mark.parametrize("resource", ["\u00a0phone", "phone\u2003", "\u3000"])
def test_resource_mapped_to_an_edge_space_is_refused(resource: str) -> None:
    # OpaqueString maps these spaces to U+0020; the prepared part must parse again.
    with pytest.raises(InvalidJID):
        prepare_resourcepart(resource)


def test_bare_and_hash_are_computed_once_and_not_pickled() -> None:
    full = JID.parse("juliet@example.com/balcony")
    assert full.bare is full.bare == JID("juliet", "example.com")
    assert hash(full) == hash(JID("juliet", "example.com", "balcony"))
    copy = pickle.loads(pickle.dumps(full))
    assert copy == full and copy._hash is None and copy._bare is None
