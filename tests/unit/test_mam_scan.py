"""What the archive keeps (XEP-0313 §6.1.1) and which stanza-ids it strips (XEP-0359 §3): the
same answer from the child tags the stream parser noted as from a walk over the children."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd.core.router import Stanza
from pubsubd.jid import JID
from pubsubd.modules.xep0313_mam import CLEAN, KEEP, SKIP, _scan

BY = "bob@example.org"
CASES = [
    ("<message type='chat'><body>hi</body></message>", CLEAN),
    ("<message><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/>"
     "</message>", CLEAN),  # type defaults to normal (RFC 6121 §5.2.2)
    ("<message type='headline'><body>hi</body></message>", SKIP),
    ("<message type='groupchat'><body>hi</body></message>", SKIP),
    ("<message type='error'><body>hi</body></message>", SKIP),
    ("<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
     SKIP),  # no body
    ("<message type='chat'><x xmlns='urn:y'><body>not ours</body></x></message>", SKIP),
    ("<message type='chat'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>", SKIP),
    ("<message type='chat'><body>hi</body>"
     "<event xmlns='http://jabber.org/protocol/pubsub#event'/></message>", SKIP),
    ("<message type='chat'><body>hi</body>"
     f"<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='{BY}'/></message>", CLEAN),
    ("<message type='chat'><body>hi</body>"
     "<stanza-id xmlns='urn:xmpp:sid:0' id='theirs' by='room@muc.example.org'/></message>", KEEP),
]


def stanza(source: str, *, noted: bool) -> Stanza:
    el = etree.fromstring(source.replace("<message", "<message xmlns='jabber:client'", 1))
    children = tuple(child.tag for child in el) if noted else None
    return Stanza(el, JID.parse("alice@example.org/a"), JID.parse("bob@example.org/b"),
                  children=children)


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_noted_children_give_the_answer_of_a_walk(source: str, expected: int) -> None:
    walked, noted = stanza(source, noted=False), stanza(source, noted=True)
    assert _scan(walked, BY) == expected
    assert _scan(noted, BY) == expected
    # Either way a stanza-id claiming to be the owner's is gone, others' are kept.
    assert etree.tostring(noted.element) == etree.tostring(walked.element)
    assert b"forged" not in etree.tostring(noted.element)


def test_stripping_a_child_forgets_the_noted_tags_and_the_bytes() -> None:
    st = stanza("<message type='chat'><body>hi</body>"
                f"<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='{BY}'/></message>", noted=True)
    st.wire = etree.tostring(st.element)
    assert _scan(st, BY) == CLEAN
    assert st.children is None and st.wire is None
