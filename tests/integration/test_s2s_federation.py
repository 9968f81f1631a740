"""Two pubsubd servers federate (RFC 6120 s2s, STARTTLS, XEP-0220 dialback): messages, presence
subscriptions, IQs and pubsub across domains; bounces for unreachable domains; lying peers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ServerProcess, connect, disconnect, reserved_port, run

from .im_helpers import R, roster_push
from .s2s_support import (
    Inbox,
    RawPeer,
    error_condition,
    federated_server,
    silent_listener,
    stanza,
)

PUBSUB_PLUGINS = ("xep_0030", "xep_0199", "xep_0060")


Pair = tuple[ServerProcess, ServerProcess, int]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("s2s")
    port_a, port_b, closed_port = reserved_port(), reserved_port(), reserved_port()
    silent, silent_port = silent_listener()
    routes_a = {"b.localhost": f"127.0.0.1:{port_b}", "pubsub.b.localhost": f"127.0.0.1:{port_b}",
                "closed.localhost": f"127.0.0.1:{closed_port}",
                "silent.localhost": f"127.0.0.1:{silent_port}"}
    routes_b = {"a.localhost": f"127.0.0.1:{port_a}", "pubsub.a.localhost": f"127.0.0.1:{port_a}"}
    a = federated_server(Path(base) / "a", "a.localhost", port_a, routes_a)
    b = federated_server(Path(base) / "b", "b.localhost", port_b, routes_b)
    a.start()
    b.start()
    try:
        yield a, b, silent_port
        # Graceful shutdown closes the federated streams too (RFC 6120 §4.4) and exits cleanly.
        assert a.stop() == 0 and b.stop() == 0
    finally:
        silent.close()
        for proc in (a, b):
            if proc.alive():
                proc.kill()


def test_messages_both_ways(pair: Pair) -> None:
    a, b, _ = pair
    alice, bob = a.add_user("alice"), b.add_user("bob")

    async def scenario() -> None:
        ca, cb = await connect(a, alice), await connect(b, bob)
        ina, inb = Inbox(ca), Inbox(cb)
        ca.send_message(mto=bob, mbody="hello from a", mtype="chat")
        got = await inb.wait(stanza("message", "chat", alice))
        assert got.findtext("{jabber:client}body") == "hello from a"
        assert got.get("to", "").startswith(bob)
        cb.send_message(mto=alice, mbody="hello from b", mtype="chat")
        back = await ina.wait(stanza("message", "chat", bob))
        assert back.findtext("{jabber:client}body") == "hello from b"
        await disconnect(ca, cb)

    run(scenario())


def test_presence_subscription_across_servers(pair: Pair) -> None:
    a, b, _ = pair
    carol, dave = a.add_user("carol"), b.add_user("dave")

    async def scenario() -> None:
        cc = await connect(a, carol, presence=False)
        cd = await connect(b, dave, presence=False)
        cd.auto_authorize = None
        cd.auto_subscribe = False
        inc, ind = Inbox(cc), Inbox(cd)
        await cc.get_roster()
        await cd.get_roster()
        cc.send_presence()
        cd.send_presence()
        cc.send_presence(pto=dave, ptype="subscribe")
        await ind.wait(stanza("presence", "subscribe", carol))
        cd.send_presence(pto=carol, ptype="subscribed")
        await inc.wait(stanza("presence", "subscribed", dave))
        # RFC 6121 §3.1.6: after approval, the contact's current presence follows.
        await inc.wait(stanza("presence", None, dave))
        push = await inc.wait(roster_push(dave))  # the push came before the presence
        while push.find(f"{R}query/{R}item").get("subscription") not in ("to", "both"):
            push = await inc.wait(roster_push(dave))
        cd.send_presence(pstatus="away for lunch", pshow="away")
        away = await inc.wait(stanza("presence", None, dave))
        assert away.findtext("{jabber:client}status") == "away for lunch"
        await disconnect(cc, cd)

    run(scenario())


def test_iq_to_remote_server_and_its_errors(pair: Pair) -> None:
    a, b, _ = pair
    erin = a.add_user("erin")

    async def scenario() -> None:
        ce = await connect(a, erin)
        info = await ce.plugin["xep_0030"].get_info(jid="b.localhost", timeout=10)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        await ce.plugin["xep_0199"].ping("b.localhost", timeout=10)
        # An IQ to a user who does not exist there comes back as that server's error.
        from slixmpp.exceptions import IqError

        with pytest.raises(IqError) as caught:
            await ce.plugin["xep_0030"].get_info(jid="nobody@b.localhost/x", timeout=10)
        assert caught.value.iq["error"]["condition"] == "service-unavailable"
        await disconnect(ce)

    run(scenario())


def test_pubsub_subscription_and_notification_across_servers(
        pair: Pair) -> None:
    a, b, _ = pair
    owner, reader = b.add_user("owner"), a.add_user("reader")

    async def scenario() -> None:
        co = await connect(b, owner, plugins=PUBSUB_PLUGINS)
        cr = await connect(a, reader, plugins=PUBSUB_PLUGINS)
        inr = Inbox(cr)
        # Default configuration (headline notifications): the service cannot know a remote
        # subscriber's presence, so it addresses the subscriber and the remote server delivers.
        await co.plugin["xep_0060"].create_node("pubsub.b.localhost", "news")
        result = await cr.plugin["xep_0060"].subscribe("pubsub.b.localhost", "news", timeout=10)
        assert result["pubsub"]["subscription"]["subscription"] == "subscribed"
        from slixmpp import ET

        entry = ET.fromstring("<entry xmlns='http://www.w3.org/2005/Atom'><title>Federated</title></entry>")
        await co.plugin["xep_0060"].publish("pubsub.b.localhost", "news", payload=entry)

        def is_event(el: Any) -> bool:
            return (el.tag == "{jabber:client}message" and el.get("from") == "pubsub.b.localhost"
                    and el.find("{http://jabber.org/protocol/pubsub#event}event") is not None)

        note = await inr.wait(is_event)
        title = note.find(".//{http://www.w3.org/2005/Atom}title")
        assert title is not None and title.text == "Federated"
        await disconnect(co, cr)

    run(scenario())


def test_unreachable_domains_bounce(pair: Pair) -> None:
    a, _, _ = pair
    frank = a.add_user("frank")

    async def scenario() -> None:
        cf = await connect(a, frank)
        inf = Inbox(cf)
        # RFC 6120 §8.3.3.16: nobody listens at the route.
        cf.send_message(mto="x@closed.localhost", mbody="anyone?", mtype="chat")
        bounced = await inf.wait(stanza("message", "error", "x@closed.localhost"))
        assert error_condition(bounced) == "remote-server-not-found"
        # RFC 6120 §8.3.3.17: a server that accepts but never answers times out.
        cf.send_message(mto="y@silent.localhost", mbody="hello?", mtype="chat")
        late = await inf.wait(stanza("message", "error", "y@silent.localhost"), timeout=15)
        assert error_condition(late) == "remote-server-timeout"
        await disconnect(cf)

    run(scenario())


def test_unverified_peer_is_refused(pair: Pair) -> None:
    a, _, _ = pair
    a.add_user("gina")
    peer = RawPeer(a.s2s_port)  # type: ignore[attr-defined]
    try:
        features = peer.open("evil.localhost", "a.localhost")
        assert "urn:ietf:params:xml:ns:xmpp-tls" in features
        # RFC 6120 §4.9.3.9: stanzas from a domain that never authenticated.
        peer.send("<message from='mallory@evil.localhost' to='gina@a.localhost'>"
                  "<body>hi</body></message>")
        assert "<invalid-from" in peer.read_all()
    finally:
        peer.close()


def test_wrong_dialback_key_is_invalid(pair: Pair) -> None:
    a, _, _ = pair
    peer = RawPeer(a.s2s_port)  # type: ignore[attr-defined]
    try:
        peer.open("b.localhost", "a.localhost")
        features = peer.starttls("b.localhost", "a.localhost")
        assert "urn:xmpp:features:dialback" in features
        # Pretend to be b.localhost: a.localhost asks b.localhost's server, which denies the key.
        peer.send("<db:result from='b.localhost' to='a.localhost'>00ff00ff</db:result>")
        answer = peer.read_all()
        assert "type='invalid'" in answer or 'type="invalid"' in answer
        assert "<not-authorized" in answer
    finally:
        peer.close()


def test_authoritative_server_answers_verify_requests(
        pair: Pair) -> None:
    a, _, _ = pair
    peer = RawPeer(a.s2s_port)  # type: ignore[attr-defined]
    try:
        peer.open("b.localhost", "a.localhost")
        # XEP-0220 §2.2.2: a key a.localhost never issued is invalid; a domain it does not
        # host is a dialback error, not a stream error.
        peer.send("<db:verify from='b.localhost' to='a.localhost' id='abc'>1234</db:verify>")
        assert "invalid" in peer.read_until(b"/>")
        peer.send("<db:verify from='b.localhost' to='other.localhost' id='abc'>1234</db:verify>")
        assert "item-not-found" in peer.read_until(b"</db:verify>")
        peer.send("</stream:stream>")
        assert "</stream:stream>" in peer.read_all()
    finally:
        peer.close()
