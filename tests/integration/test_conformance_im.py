"""IM details clients notice: XEP-0012 on one's own account (RFC 6120 §8.1.1.1), the logout
presence a resource and its siblings receive (RFC 6121 §4.5.2), and XEP-0198 counting of
malformed IQs and their error answers."""

from __future__ import annotations

import re

from harness import RawClient, ServerProcess

SM = "urn:xmpp:sm:3"


def _presence(raw: RawClient) -> None:
    raw.send("<presence><status>here</status></presence>")
    raw.read_until(b"</presence>")  # §4.2.2: our own presence comes back


def _ack(raw: RawClient) -> tuple[int, str]:
    """The server's ``h`` and everything it sent before that answer."""
    raw.send(f"<r xmlns='{SM}'/>")
    seen = raw.read_until(b"<a ")
    seen += raw.read_until(b"/>")
    match = re.search(r"h=['\"](\d+)['\"]", seen.rsplit("<a ", 1)[1])
    assert match, seen
    return int(match.group(1)), seen


def test_last_activity_without_to_is_about_the_own_account(shared_server: ServerProcess) -> None:
    shared_server.add_user("lastself")
    raw = RawClient(shared_server)
    try:
        raw.login("lastself")
        _presence(raw)
        raw.send("<iq type='get' id='l1'><query xmlns='jabber:iq:last'/></iq>")
        answer = raw.read_until(b"/>")
        # XEP-0012 §4: the account is online, so it has been idle 0 seconds.
        assert "type='result'" in answer or 'type="result"' in answer, answer
        assert re.search(r"seconds=['\"]0['\"]", answer), answer
        assert "internal-server-error" not in answer
    finally:
        raw.close()
    assert "Traceback" not in shared_server.log()


def test_unavailable_presence_reaches_the_resource_and_its_siblings(
        shared_server: ServerProcess) -> None:
    shared_server.add_user("twin")
    first, second = RawClient(shared_server), RawClient(shared_server)
    try:
        one = first.login("twin", resource="one")
        two = second.login("twin", resource="two")
        _presence(first)
        _presence(second)
        first.read_until(b"</presence>")  # two's presence, seen by one
        first.send("<presence type='unavailable'><status>bye</status></presence>")
        # RFC 6121 §4.5.2: to the other available resources and to the resource itself.
        to_self = first.read_until(b"</presence>")
        assert f"to=\"{one}\"" in to_self or f"to='{one}'" in to_self, to_self
        assert "unavailable" in to_self and "bye" in to_self
        to_sibling = second.read_until(b"</presence>")
        assert "unavailable" in to_sibling and one in to_sibling and two in to_sibling
    finally:
        first.close()
        second.close()


def test_malformed_iqs_are_answered_and_counted(shared_server: ServerProcess) -> None:
    shared_server.add_user("sloppy")
    raw = RawClient(shared_server)
    try:
        raw.login("sloppy")
        raw.send(f"<enable xmlns='{SM}'/>")
        raw.read_until(b"/>")
        assert _ack(raw)[0] == 0
        # XEP-0198 §4: every stanza counts, also those the server refuses (RFC 6120 §8.2.3).
        raw.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")  # no id
        raw.send("<iq type='get' id='two' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
                 "<ping xmlns='urn:xmpp:ping'/></iq>")  # two payloads
        raw.send("<iq id='typeless' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        raw.send("<iq type='get' id='bad-to' to='a@b@c'><ping xmlns='urn:xmpp:ping'/></iq>")
        raw.send("<iq type='result'/>")  # RFC 6120 §8.2.3: never answered, still counted
        raw.send("<iq type='get' id='ok' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        h, seen = _ack(raw)
        assert h == 6, seen
        assert seen.count("bad-request") == 3 and seen.count("jid-malformed") == 1, seen
        assert re.search(r"id=['\"]ok['\"]", seen), seen
        # Five answers went out: the client acknowledges them all without a stream error.
        raw.send(f"<a xmlns='{SM}' h='5'/>")
        raw.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert "after" in raw.read_until(b"/>")
    finally:
        raw.close()
