"""XEP-0198 on client streams: slixmpp's plugin, acks by hand, and resumption after a drop."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

from harness import (
    RawClient,
    ServerProcess,
    disconnect,
    make_client,
    round_trip,
    run,
)

from .im_helpers import C, Inbox, presence

SM = "urn:xmpp:sm:3"


def _authenticate(raw: RawClient, local: str) -> str:
    """STARTTLS and SASL PLAIN, stopping before binding; the post-auth features."""
    raw.open()
    raw.starttls()
    raw.open()
    token = base64.b64encode(f"\0{local}\0password1".encode()).decode()
    raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    raw.read_until(b"<success")
    return raw.open()


def _bind(raw: RawClient, resource: str) -> str:
    raw.send(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             f"<resource>{resource}</resource></bind></iq>")
    return raw.read_until(b"</iq>").split("<jid>")[1].split("</jid>")[0]


def _enable(raw: RawClient, extra: str = "") -> dict[str, str]:
    raw.send(f"<enable xmlns='{SM}' resume='true'{extra}/>")
    enabled = raw.read_until(b"/>")
    assert "<enabled" in enabled, enabled
    return dict(re.findall(r"(\w+)='([^']*)'", enabled))


def _ack(raw: RawClient) -> int:
    raw.send(f"<r xmlns='{SM}'/>")
    answer = raw.read_until(b"/>")
    while "<a " not in answer:
        answer = raw.read_until(b"/>")
    match = re.search(r"<a [^>]*h='(\d+)'", answer)
    assert match, answer
    return int(match.group(1))


def _ping(n: int) -> str:
    return f"<iq type='get' id='p{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"


def test_slixmpp_plugin_enables_and_acks(shared_server: ServerProcess) -> None:
    jid = shared_server.add_user("slix")

    async def scenario() -> None:
        client = make_client(jid, "password1", ("xep_0030", "xep_0199", "xep_0198"))
        enabled: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acked: list[Any] = []
        all_acked = asyncio.Event()
        client.add_event_handler("sm_enabled", lambda ev: enabled.done() or enabled.set_result(ev))
        started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def on_acked(stanza: Any) -> None:
            acked.append(stanza)
            if len(acked) >= 6:
                all_acked.set()

        client.add_event_handler("stanza_acked", on_acked)
        client.add_event_handler("session_start",
                                 lambda _: started.done() or started.set_result(True))
        client.connect(host="127.0.0.1", port=shared_server.c2s_port)
        await asyncio.wait_for(enabled, 15)
        await asyncio.wait_for(started, 15)
        sm = client.plugin["xep_0198"]
        assert sm.sm_id  # resumption was granted with an id
        for _ in range(6):
            await client.plugin["xep_0199"].ping(shared_server.domain, timeout=5)
        sm.request_ack()
        await asyncio.wait_for(all_acked.wait(), 5)  # the server's <a h=…/> covered them all
        assert sm.handled >= 6  # and the client counted the server's stanzas it handled
        await disconnect(client)

    run(scenario())


def test_raw_acks_count_stanzas(shared_server: ServerProcess) -> None:
    shared_server.add_user("counter")
    raw = RawClient(shared_server)
    try:
        features = _authenticate(raw, "counter")
        assert f"<sm xmlns=\"{SM}\"/>" in features or f"<sm xmlns='{SM}'/>" in features
        # XEP-0198 §3: not before binding, and the client may still bind afterwards.
        raw.send(f"<enable xmlns='{SM}'/>")
        assert "unexpected-request" in raw.read_until(b"</failed>")
        _bind(raw, "counter")
        attrs = _enable(raw)
        assert attrs["resume"] == "true" and len(attrs["id"]) >= 16 and attrs["max"] == "300"
        assert _ack(raw) == 0
        raw.send(_ping(1) + _ping(2) + _ping(3))
        assert _ack(raw) == 3
        raw.send(f"<enable xmlns='{SM}'/>")  # §3: only once
        assert "unexpected-request" in raw.read_until(b"</failed>")
        # Three ping results were sent: acknowledging a fourth is a stream error (§6).
        raw.send(f"<a xmlns='{SM}' h='4'/>")
        tail = raw.read_all()
        assert "undefined-condition" in tail and "handled-count-too-high" in tail, tail
    finally:
        raw.close()


def test_resume_after_a_drop_keeps_session_and_presence(shared_server: ServerProcess) -> None:
    shared_server.add_user("mobile")
    bob_jid = shared_server.add_user("watcher")

    async def scenario() -> None:
        bob = make_client(bob_jid, "password1")
        started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        bob.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
        bob_in = Inbox(bob)
        bob.connect(host="127.0.0.1", port=shared_server.c2s_port)
        await asyncio.wait_for(started, 15)
        bob.send_presence()
        bob_full = str(bob.boundjid)

        raw = RawClient(shared_server)
        await asyncio.to_thread(_authenticate, raw, "mobile")
        alice = await asyncio.to_thread(_bind, raw, "phone")
        attrs = await asyncio.to_thread(_enable, raw)
        raw.send(f"<presence to='{bob_full}'/>")  # directed: its end would be broadcast
        await bob_in.wait(presence(None, alice))
        for body in ("one", "two"):
            bob.send_message(mto=alice, mbody=body, mtype="chat")
        got = await asyncio.to_thread(raw.read_until, b"two</body>")
        assert "one</body>" in got
        raw.close()  # no </stream:stream>: the session hibernates
        await asyncio.to_thread(shared_server.wait_for_log, f"session {alice} hibernated")
        bob.send_message(mto=alice, mbody="three", mtype="chat")  # queued meanwhile
        await round_trip(bob)

        again = RawClient(shared_server)
        try:
            await asyncio.to_thread(_authenticate, again, "mobile")
            # We handled "one" only: "two" must come again, then "three".
            again.send(f"<resume xmlns='{SM}' previd='{attrs['id']}' h='1'/>")
            resumed = await asyncio.to_thread(again.read_until, b"three</body>")
            assert f"previd='{attrs['id']}'" in resumed and "h='1'" in resumed, resumed
            assert "one</body>" not in resumed
            assert resumed.index("two</body>") < resumed.index("three</body>")
            assert await asyncio.to_thread(_ack, again) == 1  # counters carried over
            again.send(f"<message to='{bob_full}' type='chat'><body>back</body></message>")
            back = await bob_in.wait(lambda el: el.findtext(f"{C}body") == "back")
            assert back.get("from") == alice  # same full JID
            assert not [el for el in bob_in.items if el.get("type") == "unavailable"]
            again.send("</stream:stream>")
            await bob_in.wait(presence("unavailable", alice))  # a clean close ends it
        finally:
            again.close()
        await disconnect(bob)

    run(scenario())


def test_unknown_previd_fails_and_binding_still_works(shared_server: ServerProcess) -> None:
    shared_server.add_user("stranger")
    raw = RawClient(shared_server)
    try:
        _authenticate(raw, "stranger")
        raw.send(f"<resume xmlns='{SM}' previd='no-such-id' h='0'/>")
        assert "item-not-found" in raw.read_until(b"</failed>")
        assert _bind(raw, "desk").endswith("/desk")
    finally:
        raw.close()


def test_expired_session_goes_offline_and_cannot_resume(shared_server: ServerProcess) -> None:
    shared_server.add_user("flaky")
    bob_jid = shared_server.add_user("observer")

    async def scenario() -> None:
        bob = make_client(bob_jid, "password1")
        started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        bob.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
        bob_in = Inbox(bob)
        bob.connect(host="127.0.0.1", port=shared_server.c2s_port)
        await asyncio.wait_for(started, 15)
        bob.send_presence()
        bob_full = str(bob.boundjid)

        raw = RawClient(shared_server)
        await asyncio.to_thread(_authenticate, raw, "flaky")
        alice = await asyncio.to_thread(_bind, raw, "phone")
        attrs = await asyncio.to_thread(_enable, raw, " max='1'")  # §3: client's maximum
        assert attrs["max"] == "1"
        raw.send(f"<presence to='{bob_full}'/>")
        await bob_in.wait(presence(None, alice))
        bob.send_message(mto=alice, mbody="kept for later", mtype="chat")
        await asyncio.to_thread(raw.read_until, b"kept for later</body>")
        raw.close()
        # Expiry fires session/closed: the unavailable presence goes out only now.
        await bob_in.wait(presence("unavailable", alice), timeout=8)

        again = RawClient(shared_server)
        try:
            await asyncio.to_thread(_authenticate, again, "flaky")
            again.send(f"<resume xmlns='{SM}' previd='{attrs['id']}' h='0'/>")
            assert "item-not-found" in await asyncio.to_thread(again.read_until, b"</failed>")
            await asyncio.to_thread(_bind, again, "laptop")
            again.send("<presence/>")  # the unacked chat message was stored offline (§4)
            offline = await asyncio.to_thread(again.read_until, b"</message>")
            assert "kept for later" in offline and "urn:xmpp:delay" in offline
        finally:
            again.close()
        await disconnect(bob)

    run(scenario())


def test_resume_while_old_stream_is_open_replaces_it(shared_server: ServerProcess) -> None:
    shared_server.add_user("twice")
    old = RawClient(shared_server)
    new = RawClient(shared_server)
    try:
        _authenticate(old, "twice")
        jid = _bind(old, "tab")
        attrs = _enable(old)
        old.send(f"<message to='{jid}' type='chat'><body>echo</body></message>")
        old.read_until(b"echo</body>")
        _authenticate(new, "twice")
        new.send(f"<resume xmlns='{SM}' previd='{attrs['id']}' h='0'/>")
        # §5 Example 15: the still-open stream gets <conflict/>; the message comes again.
        assert "h='1'" in new.read_until(b"echo</body>")
        assert "<conflict" in old.read_all()
        assert _ack(new) == 1
    finally:
        old.close()
        new.close()


def test_acks_and_resumption_over_websocket(tmp_path: Path) -> None:
    from .test_websocket import WSClient, bind, plain_auth

    proc = ServerProcess(tmp_path, extra={"listeners": [
        {"kind": "c2s", "address": "127.0.0.1", "port": 0},
        {"kind": "websocket", "address": "127.0.0.1", "port": 0},
    ]})
    proc.start()
    ws = proc.port("websocket")
    try:
        proc.add_user("webby")
        first = WSClient(ws)
        first.open()
        plain_auth(first, "webby")
        jid = bind(first, "web")
        first.send(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = first.recv_xml()
        assert enabled.tag == f"{{{SM}}}enabled" and enabled.get("resume") == "true"
        first.send(f"<message xmlns='jabber:client' to='{jid}' type='chat'>"
                   "<body>w1</body></message>")
        assert first.recv_xml().findtext("{jabber:client}body") == "w1"
        first.send(f"<r xmlns='{SM}'/>")
        assert first.recv_xml().get("h") == "1"  # each SM element is its own frame (RFC 7395)
        first.close()  # no <close/>: resumable

        second = WSClient(ws)
        second.open()
        plain_auth(second, "webby")
        features = second.open()
        assert features.find(f"{{{SM}}}sm") is not None
        second.send(f"<resume xmlns='{SM}' previd='{enabled.get('id')}' h='0'/>")
        resumed = second.recv_xml()
        assert resumed.tag == f"{{{SM}}}resumed" and resumed.get("h") == "1"
        assert second.recv_xml().findtext("{jabber:client}body") == "w1"  # re-sent, unacked
        second.close()
    finally:
        proc.kill()
