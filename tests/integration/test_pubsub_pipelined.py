"""Publishes a client pipelines (XEP-0060 §7.1) are stored together and answered in order, each
followed by its notification; a request sent behind them sees every one of them."""

from __future__ import annotations

from harness import RawClient, ServerProcess
from lxml import etree

from .pubsub_helpers import EVENT, PUBSUB, service_jid

CLIENT = "jabber:client"
COUNT = 40


def parse_stanzas(text: str) -> list[etree._Element]:
    root = etree.fromstring(f"<root xmlns='{CLIENT}'>{text}</root>".encode())
    return list(root)


def test_pipelined_publishes_answered_in_order_and_seen_by_the_next_request(
        shared_server: ServerProcess) -> None:
    server = shared_server
    server.add_user("piper")
    svc = service_jid(server)
    raw = RawClient(server)
    try:
        me = raw.login("piper")
        raw.send(f"<iq type='set' id='create' to='{svc}'><pubsub xmlns='{PUBSUB}'>"
                 f"<create node='piped'/></pubsub></iq>")
        raw.read_until(b"</iq>")
        raw.send(f"<iq type='set' id='sub' to='{svc}'><pubsub xmlns='{PUBSUB}'>"
                 f"<subscribe node='piped' jid='{me}'/></pubsub></iq>")
        raw.read_until(b"</iq>")
        # Every publish, then a retrieval, in one write: the server reads them in one go.
        raw.send("".join(
            f"<iq type='set' id='p{n}' to='{svc}'><pubsub xmlns='{PUBSUB}'>"
            f"<publish node='piped'><item id='i{n}'><x xmlns='urn:example'>{n}</x></item>"
            f"</publish></pubsub></iq>" for n in range(COUNT))
            + f"<iq type='get' id='items' to='{svc}'><pubsub xmlns='{PUBSUB}'>"
              f"<items node='piped'/></pubsub></iq>")
        text = raw.read_until(b"id=\"items\"")
        text += raw.read_until(b"</iq>")
        stanzas = parse_stanzas(text)
    finally:
        raw.close()
    seen = []
    for st in stanzas:
        if st.tag == f"{{{CLIENT}}}iq":
            assert st.get("type") == "result", etree.tostring(st)
            seen.append(("result", st.get("id")))
        elif st.tag == f"{{{CLIENT}}}message":
            item = st.find(f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}item")
            assert item is not None, etree.tostring(st)
            seen.append(("event", item.get("id")))
    # §7.1.2: each publish is acknowledged, then its notification goes out, in arrival order.
    expected = [step for n in range(COUNT) for step in (("result", f"p{n}"), ("event", f"i{n}"))]
    assert seen == [*expected, ("result", "items")]
    # The retrieval waited for the publishes queued before it (RFC 6120 §10.1).
    listed = stanzas[-1].findall(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items/{{{PUBSUB}}}item")
    assert sorted(i.get("id") for i in listed) == sorted(f"i{n}" for n in range(COUNT))
