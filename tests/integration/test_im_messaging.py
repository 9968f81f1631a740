"""RFC 6121 §8.5 delivery, XEP-0160 offline storage, XEP-0191 blocking and XEP-0280 carbons,
with real slixmpp clients."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import ServerProcess, connect, disconnect, round_trip, run

from .im_helpers import C, Inbox


def body(text: str) -> Callable[[ET.Element], bool]:
    return lambda el: el.tag == f"{C}message" and el.findtext(f"{C}body") == text


def error(condition: str) -> Callable[[ET.Element], bool]:
    return lambda el: el.get("type") == "error" and el.find(
        f"{C}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}{condition}") is not None


async def online(server: ServerProcess, jid: str, priority: int = 0,
                 plugins: tuple[str, ...] = ("xep_0030",)) -> tuple[Any, Inbox]:
    client = await connect(server, jid, presence=False, plugins=plugins)
    inbox = Inbox(client)
    client.send_presence(ppriority=priority)
    await round_trip(client)  # available: the server routes to this resource from now on
    return client, inbox


def test_bare_jid_message_goes_to_highest_priority(shared_server: ServerProcess) -> None:
    server = shared_server
    alice, bob = server.add_user("alice"), server.add_user("bob")

    async def scenario() -> None:
        high, hin = await online(server, alice + "/high", 5)
        low, lin = await online(server, alice + "/low", 1)
        neg, nin = await online(server, alice + "/neg", -1)
        b, _ = await online(server, bob)
        b.send_message(mto=alice, mbody="to the best one", mtype="chat")
        await hin.wait(body("to the best one"))
        b.send_message(mto=alice + "/low", mbody="to low", mtype="chat")
        await lin.wait(body("to low"))  # sent after the first: that one would have come first
        await round_trip(neg)
        assert "to the best one" not in lin.bodies() + nin.bodies()
        await disconnect(high, low, neg, b)

    run(scenario())


def test_offline_messages_survive_a_restart_in_order(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra={"limits": {"offline_max_messages": 3}})
    server.start()
    try:
        carol, dave = server.add_user("carol"), server.add_user("dave")

        async def send_while_away() -> None:
            d, din = await online(server, dave)
            for i in range(3):
                d.send_message(mto=carol, mbody=f"note {i}", mtype="chat")
            d.send_message(mto=carol, mbody="one too many", mtype="chat")
            await din.wait(error("service-unavailable"))  # XEP-0160 quota
            await disconnect(d)

        run(send_while_away())
        server.restart(hard=True)  # durable: kill -9 loses nothing acknowledged

        async def come_back() -> None:
            c = await connect(server, carol, presence=False)
            cin = Inbox(c)
            c.send_presence(ppriority=-1)  # negative priority: nothing yet (XEP-0160 §3)
            await round_trip(c)
            assert cin.bodies() == []
            c.send_presence(ppriority=1)
            for i in range(3):
                el = await cin.wait(
                    lambda e: e.tag == f"{C}message" and e.find(f"{C}body") is not None)
                assert el.findtext(f"{C}body") == f"note {i}"
                delay = el.find("{urn:xmpp:delay}delay")
                assert delay is not None and delay.get("stamp", "").endswith("Z")
                assert delay.get("from") == server.domain
            await disconnect(c)
            c2 = await connect(server, carol, presence=False)
            c2in = Inbox(c2)
            c2.send_presence()
            await round_trip(c2)
            assert c2in.bodies() == []  # delivered once, then gone
            await disconnect(c2)

        run(come_back())
    finally:
        server.kill()


def test_blocked_user_messages_are_dropped(shared_server: ServerProcess) -> None:
    server = shared_server
    erin, frank = server.add_user("erin"), server.add_user("frank")

    async def scenario() -> None:
        e, ein = await online(server, erin, plugins=("xep_0030", "xep_0191"))
        f, fin = await online(server, frank)
        await e.plugin["xep_0191"].block(frank)
        blocked = await e.plugin["xep_0191"].get_blocked()
        assert f'jid="{frank}"' in str(blocked)
        f.send_message(mto=erin, mbody="let me in", mtype="chat")
        await fin.wait(error("service-unavailable"))  # XEP-0191 §3.5
        e.send_message(mto=frank, mbody="go away", mtype="chat")
        el = await ein.wait(error("not-acceptable"))  # §3.6
        assert el.find(f"{C}error/{{urn:xmpp:blocking:errors}}blocked") is not None
        await round_trip(e)
        await round_trip(f)
        assert "let me in" not in ein.bodies() and "go away" not in fin.bodies()
        await e.plugin["xep_0191"].unblock(frank)
        f.send_message(mto=erin, mbody="hello again", mtype="chat")
        await ein.wait(body("hello again"))
        await disconnect(e, f)

    run(scenario())


def test_carbons_copy_chats_to_other_resource(shared_server: ServerProcess) -> None:
    server = shared_server
    gina, hank = server.add_user("gina"), server.add_user("hank")

    async def scenario() -> None:
        plugins = ("xep_0030", "xep_0280")
        phone, pin = await online(server, gina + "/phone", 1, plugins)
        desk, din = await online(server, gina + "/desk", 1, plugins)
        await desk.plugin["xep_0280"].enable()
        h, hin = await online(server, hank)
        h.send_message(mto=gina + "/phone", mbody="hi phone", mtype="chat")
        await pin.wait(body("hi phone"))
        el = await din.wait(lambda e: e.find("{urn:xmpp:carbons:2}received") is not None)
        fwd = el.find("{urn:xmpp:carbons:2}received/{urn:xmpp:forward:0}forwarded/"
                      f"{C}message")
        assert fwd is not None and fwd.findtext(f"{C}body") == "hi phone"
        assert el.get("from") == gina
        phone.send_message(mto=hank, mbody="hi hank", mtype="chat")
        await hin.wait(body("hi hank"))
        sent = await din.wait(lambda e: e.find("{urn:xmpp:carbons:2}sent") is not None)
        assert "hi hank" in ET.tostring(sent).decode()
        # The phone did not enable carbons: it gets no copy of the desk's chat.
        desk.send_message(mto=hank, mbody="from desk", mtype="chat")
        await hin.wait(body("from desk"))
        await round_trip(phone)
        assert not any(e.find("{urn:xmpp:carbons:2}sent") is not None for e in pin.items)
        await disconnect(phone, desk, h)

    run(scenario())
