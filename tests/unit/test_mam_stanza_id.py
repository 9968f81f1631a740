"""The recipient's stanza-id is spliced into the serialized message (XEP-0313 §3.5): the bytes
must be exactly those lxml writes after inserting the element, whatever the message holds."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd.modules.xep0313_mam import add_stanza_id, with_stanza_id

MESSAGES = [
    "<message xmlns='jabber:client' to='a@b/c' type='chat'><body>x &amp; y</body></message>",
    "<message xmlns='jabber:client' xmlns:sid='urn:xmpp:sid:0' to='a@b/c' type='chat'>"
    "<body>x</body><sid:origin-id id='1'/></message>",
    "<message xmlns='jabber:client' to='a@b/c' type='chat' xml:lang='de'><body>ü</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
]
IDS = [("AbC-_12", "bob@example.org"), ("AbC", "jösé@example.org"), ('q"', "a&b@example.org")]


@pytest.mark.parametrize("source", MESSAGES)
@pytest.mark.parametrize(("uid", "by"), IDS)
def test_spliced_bytes_equal_an_inserted_element(source: str, uid: str, by: str) -> None:
    el = etree.fromstring(source)
    before = etree.tostring(el)
    spliced = with_stanza_id(el, uid, by)
    assert etree.tostring(el) == before  # the element itself is left as it was
    assert with_stanza_id(el, uid, by, before) == spliced  # from bytes serialized earlier
    add_stanza_id(el, uid, by)
    assert spliced == etree.tostring(el)
