"""XEP-0357 push notifications, against an app server written here as a slixmpp component
(XEP-0114) that records every publish and answers it — with an error for the node "broken".

Real server, real clients. Each wait is on an event: a publish reaching the app server, an
IQ answer, a log line ("hibernated", "disabled"). To show that something was NOT pushed, a
message to another registered user follows it: arrivals are handled in order, so that user's
push arriving means the first message has been dealt with.
"""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import RawClient, ServerProcess, connect, disconnect, run  # noqa: E402
from test_components_accept import component  # noqa: E402

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
APP = "push.localhost"
SECRET = "component-secret"
COALESCE = 3.0
SM = "urn:xmpp:sm:3"


def push_server(tmp_path: Path, timeout: float, **extra: Any) -> ServerProcess:
    return ServerProcess(tmp_path, extra={**extra,
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
                      {"kind": "component", "address": "127.0.0.1", "port": 0}],
        "components": {APP: {"secret": SECRET}},
        "push": {"include_body": True, "coalesce": COALESCE, "timeout": timeout},
    })


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = push_server(tmp_path, 10.0)
    proc.start()
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


class Push:
    """One publish the app server received."""

    def __init__(self, iq: ET.Element) -> None:
        self.iq = iq
        publish = iq.find(f".//{{{PUBSUB}}}publish")
        assert publish is not None
        self.node = publish.get("node", "")
        self.sender = iq.get("from", "")
        note = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{{{DATA}}}x")
        self.summary = fields(note)
        self.options = fields(iq.find(f".//{{{PUBSUB}}}publish-options/{{{DATA}}}x"))

    @property
    def count(self) -> int:
        return int(self.summary["message-count"][0])


def fields(form: ET.Element | None) -> dict[str, list[str]]:
    if form is None:
        return {}
    return {f.get("var", ""): [v.text or "" for v in f.findall(f"{{{DATA}}}value")]
            for f in form.findall(f"{{{DATA}}}field")}


class AppServer:
    """Records publishes; answers each with a result, an error for node "broken", nothing
    for node "silent"."""

    def __init__(self, comp: Any) -> None:
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        self.comp = comp
        self.pushes: list[Push] = []
        self._arrived = asyncio.Event()
        comp.register_handler(Callback(
            "app server publish",
            MatchXPath(f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"), self._on_iq))

    def _on_iq(self, iq: Any) -> None:
        push = Push(iq.xml)
        self.pushes.append(push)
        self._arrived.set()
        who, me, id_ = iq["from"], iq["to"], iq["id"]
        if push.node == "silent":
            return
        if push.node == "broken":
            self.comp.send_raw(
                f"<iq type='error' id='{id_}' to='{who}' from='{me}'><error type='cancel'>"
                "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        else:
            self.comp.send_raw(f"<iq type='result' id='{id_}' to='{who}' from='{me}'/>")

    def to(self, node: str) -> list[Push]:
        return [p for p in self.pushes if p.node == node]

    async def wait(self, node: str, count: int = 1, within: float = 15.0) -> list[Push]:
        deadline = asyncio.get_running_loop().time() + within
        while len(self.to(node)) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"no push to {node}; got {[p.node for p in self.pushes]}"
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass
        return self.to(node)


async def iq(client: Any, payload: str, to: str | None = None) -> ET.Element:
    request = client.make_iq(ito=to, itype="set" if "<query" not in payload else "get")
    request.append(ET.fromstring(payload))
    reply = await request.send(timeout=10)
    return reply.xml  # type: ignore[no-any-return]


def enable(node: str, secret: str = "", body: bool = False) -> str:
    form = ""
    if secret or body:
        form = ("<x xmlns='jabber:x:data'><field var='FORM_TYPE'><value>"
                f"{PUBSUB}#publish-options</value></field>")
        if secret:
            form += f"<field var='secret'><value>{secret}</value></field>"
        if body:
            form += "<field var='pubsubd#include_body'><value>1</value></field>"
        form += "</x>"
    return f"<enable xmlns='{PUSH}' jid='{APP}' node='{node}'>{form}</enable>"


async def register(server: ServerProcess, local: str, payload: str) -> str:
    jid = server.add_user(local)
    client = await connect(server, jid)
    await iq(client, payload)
    await disconnect(client)  # offline: messages now wait in storage
    return jid


async def hibernate_after(server: ServerProcess, local: str, push_enable: str,
                          deliver: Callable[[], None], seen: bytes) -> None:
    """Log ``local`` in on resource "phone" with push (``push_enable``) and resumable stream
    management, have ``deliver`` send it a message it receives (``seen``) but does not
    acknowledge, then drop the connection so that the session hibernates (XEP-0198)."""
    raw = RawClient(server)
    full = await asyncio.to_thread(raw.login, local, "password1", "phone")
    raw.send(f"<iq type='set' id='e1'>{push_enable}</iq>")
    await asyncio.to_thread(raw.read_until, b"id=\"e1\"")
    raw.send(f"<enable xmlns='{SM}' resume='true'/><presence/>")
    await asyncio.to_thread(raw.read_until, b"<enabled")
    deliver()
    await asyncio.to_thread(raw.read_until, seen)
    raw.close()  # no </stream:stream>: the session hibernates
    await asyncio.to_thread(server.wait_for_log, f"session {full} hibernated")


def test_push_for_offline_and_hibernated_accounts(server: ServerProcess) -> None:
    async def scenario() -> None:
        app = AppServer(await component(server, APP))
        bob = await connect(server, server.add_user("bob"))

        # §4.1: the feature is on the account's bare JID.
        alice_jid = server.add_user("alice")
        alice = await connect(server, alice_jid)
        info = await iq(alice, "<query xmlns='http://jabber.org/protocol/disco#info'/>",
                        to=alice_jid)
        features = info.iter("{http://jabber.org/protocol/disco#info}feature")
        assert PUSH in {f.get("var") for f in features}
        await iq(alice, enable("alice-phone", secret="s3cret"))
        await disconnect(alice)
        carol = await register(server, "carol", enable("carol-phone", body=True))

        # Offline: a push with the secret as publish-options, the count and the sender,
        # and no body (alice did not ask for one).
        bob.send_message(mto=alice_jid, mbody="first", mtype="chat")
        [push] = await app.wait("alice-phone")
        assert push.sender == alice_jid
        assert push.options["secret"] == ["s3cret"]
        assert push.options["FORM_TYPE"] == [f"{PUBSUB}#publish-options"]
        assert push.summary["FORM_TYPE"] == ["urn:xmpp:push:summary"]
        assert push.count == 1
        assert push.summary["last-message-sender"][0].startswith("bob@localhost")
        assert "last-message-body" not in push.summary

        # A burst is coalesced: counted into few pushes, not one each.
        for n in range(5):
            bob.send_message(mto=alice_jid, mbody=f"burst {n}", mtype="chat")
        await app.wait("alice-phone", 2)
        while sum(p.count for p in app.to("alice-phone")) < 6:
            await app.wait("alice-phone", len(app.to("alice-phone")) + 1)
        assert len(app.to("alice-phone")) <= 3, [p.count for p in app.to("alice-phone")]

        # Carol asked for bodies and the server allows them; the opt-in stays with us.
        bob.send_message(mto=carol, mbody="with a body", mtype="chat")
        [push] = await app.wait("carol-phone")
        assert push.summary["last-message-body"] == ["with a body"]
        assert "pubsubd#include_body" not in push.options

        # A session hibernated by XEP-0198 (its phone app suspended) gets a push too.
        dave = server.add_user("dave")
        await hibernate_after(server, "dave", enable("dave-phone"), lambda: bob.send_message(
            mto=dave, mbody="while connected", mtype="chat"), b"while connected")
        bob.send_message(mto=dave, mbody="while asleep", mtype="chat")
        [push] = await app.wait("dave-phone")
        assert push.count == 1 and app.to("alice-phone")  # nothing for the connected message

        await disconnect(bob)

    run(scenario())


def test_a_message_pushed_while_asleep_pushes_once(tmp_path: Path) -> None:
    """When the hibernation expires, its unacknowledged messages go to offline storage: the one
    pushed while the session slept does not push again; one never pushed (delivered while
    connected, unacknowledged) does."""
    server = push_server(tmp_path, 10.0,
                         stream_management={"resume_timeout": COALESCE + 1.0})
    server.start()

    def send(client: Any, to: str, body: str, id_: str) -> None:
        message = client.make_message(mto=to, mbody=body, mtype="chat")
        message["id"] = id_
        message.send()

    async def scenario() -> None:
        app = AppServer(await component(server, APP))
        bob = await connect(server, server.add_user("bob"))
        dave = server.add_user("dave")
        await hibernate_after(server, "dave", enable("dave-phone", body=True),
                              lambda: send(bob, dave, "while connected", "m1"),
                              b"while connected")
        send(bob, dave, "while asleep", "m2")
        [first] = await app.wait("dave-phone")
        assert first.count == 1 and first.summary["last-message-body"] == ["while asleep"]

        # The hibernation expires: both messages go to offline storage; only the first pushes.
        await app.wait("dave-phone", 2, within=COALESCE + 20.0)
        send(bob, dave, "after expiry", "m3")
        while app.to("dave-phone")[-1].summary.get("last-message-body") != ["after expiry"]:
            await app.wait("dave-phone", len(app.to("dave-phone")) + 1, within=COALESCE + 15.0)
        later = app.to("dave-phone")[1:]
        assert sum(p.count for p in later) == 2, [(p.count, p.summary) for p in later]
        await disconnect(bob)

    try:
        run(scenario())
    finally:
        if server.alive():
            server.kill()


def test_disable_and_app_server_errors_stop_pushes(server: ServerProcess) -> None:
    async def scenario() -> None:
        app = AppServer(await component(server, APP))
        bob = await connect(server, server.add_user("bob"))
        witness = await register(server, "witness", enable("witness"))
        erin_jid = server.add_user("erin")
        erin = await connect(server, erin_jid)
        await iq(erin, enable("erin-1"))
        await iq(erin, enable("erin-2"))
        # §6: with a node, only that one goes.
        await iq(erin, f"<disable xmlns='{PUSH}' jid='{APP}' node='erin-1'/>")
        await disconnect(erin)
        bob.send_message(mto=erin_jid, mbody="one", mtype="chat")
        await app.wait("erin-2")
        bob.send_message(mto=witness, mbody="sync", mtype="chat")
        await app.wait("witness")
        assert not app.to("erin-1")

        # Without a node, every node of the service goes.
        erin = await connect(server, erin_jid)
        await iq(erin, f"<disable xmlns='{PUSH}' jid='{APP}'/>")
        await disconnect(erin)
        bob.send_message(mto=erin_jid, mbody="two", mtype="chat")
        bob.send_message(mto=witness, mbody="sync", mtype="chat")
        await app.wait("witness", 2)
        assert len(app.to("erin-2")) == 1 and not app.to("erin-1")

        # §7.1: an error from the app server disables the registration.
        frank = await register(server, "frank", enable("broken"))
        bob.send_message(mto=frank, mbody="one", mtype="chat")
        await app.wait("broken")
        await asyncio.to_thread(server.wait_for_log, "disabled after a failed publish")
        bob.send_message(mto=frank, mbody="two", mtype="chat")
        bob.send_message(mto=witness, mbody="sync", mtype="chat")
        await app.wait("witness", 3)
        assert len(app.to("broken")) == 1

        await disconnect(bob)

    run(scenario())


def test_silence_and_the_push_services_own_disabling_stop_pushes(tmp_path: Path) -> None:
    server = push_server(tmp_path, 1.0)
    server.start()

    async def scenario() -> None:
        comp = await component(server, APP)
        app = AppServer(comp)
        bob = await connect(server, server.add_user("bob"))
        witness = await register(server, "witness", enable("witness"))

        # §7.1: no answer within push.timeout counts as an error.
        gina = await register(server, "gina", enable("silent"))
        bob.send_message(mto=gina, mbody="one", mtype="chat")
        await app.wait("silent")
        await asyncio.to_thread(server.wait_for_log, "disabled after a failed publish")
        bob.send_message(mto=gina, mbody="two", mtype="chat")
        bob.send_message(mto=witness, mbody="sync", mtype="chat")
        await app.wait("witness")
        assert len(app.to("silent")) == 1

        # §8: the push service announces it stopped accepting; the server forgets the node.
        hank = await register(server, "hank", enable("hank-phone"))
        comp.send_raw(f"<message from='{APP}' to='{hank}'><pubsub xmlns='{PUBSUB}' "
                      f"node='hank-phone'><affiliation jid='{hank}' affiliation='none'/>"
                      "</pubsub></message>")
        await round_trip_component(comp)
        bob.send_message(mto=hank, mbody="one", mtype="chat")
        bob.send_message(mto=witness, mbody="sync", mtype="chat")
        await app.wait("witness", 2)
        assert not app.to("hank-phone")

        await disconnect(bob)

    try:
        run(scenario())
    finally:
        server.stop()


async def round_trip_component(comp: Any) -> None:
    """A ping from the component to the server: what it sent before has been handled."""
    ping = comp.make_iq_get(ito="localhost", ifrom=APP)
    ping.append(ET.Element("{urn:xmpp:ping}ping"))
    await ping.send(timeout=10)
