"""XEP-0198 hand-over per account: what one resource received is never stored again because
another session of the same account ended without acknowledging it (XEP-0198 §4, RFC 6121
§8.5.3.2); what nobody received is handed over once, stamped when it was first sent."""

from __future__ import annotations

import asyncio
import datetime
import re
from typing import Any

from harness import RawClient, ServerProcess, disconnect, make_client, run

from .im_helpers import Inbox, presence
from .test_stream_management import _authenticate, _bind, _enable

DELAY_STAMP = re.compile(r"<delay [^>]*stamp=['\"]([^'\"]+)['\"]")


async def slixmpp_client(server: ServerProcess, jid: str, plugins: tuple[str, ...]) -> Any:
    client = make_client(jid, "password1", ("xep_0030", "xep_0199", *plugins))
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    client.connect(host="127.0.0.1", port=server.c2s_port)
    await asyncio.wait_for(started, 15)
    return client


def raw_resource(server: ServerProcess, local: str, resource: str, enable: str | None) -> tuple[
        RawClient, str]:
    """A raw resource, available; with stream management when ``enable`` is given."""
    raw = RawClient(server)
    _authenticate(raw, local)
    jid = _bind(raw, resource)
    if enable is not None:
        _enable(raw, enable)
    raw.send("<presence/>")
    raw.read_until(b"<presence")  # its own presence comes back: it is available
    return raw, jid


def offline_bodies(server: ServerProcess, local: str, resource: str) -> list[str]:
    """Log in a fresh resource and collect what offline storage gives it at initial presence."""
    raw = RawClient(server)
    try:
        _authenticate(raw, local)
        _bind(raw, resource)
        # The presence is routed (offline delivery included) before the ping is read.
        raw.send("<presence/><iq type='get' id='done' to='localhost'>"
                 "<ping xmlns='urn:xmpp:ping'/></iq>")
        received = raw.read_until(b"id=\"done\"")
    finally:
        raw.close()
    return re.findall(r"<message[^>]*>.*?<body>([^<]*)</body>.*?</message>", received, re.S)


def test_three_resources_each_entry_once_and_never_stored_again(
        shared_server: ServerProcess) -> None:
    """One SM session dropped unacked, one closed cleanly unacked, one remaining."""
    shared_server.add_user("triple")
    sender_jid = shared_server.add_user("feedsource")

    async def scenario() -> None:
        sender = await slixmpp_client(shared_server, sender_jid, ())
        sender.send_presence()
        sender_in = Inbox(sender)
        stayer = await slixmpp_client(shared_server, "triple@localhost/stayer", ("xep_0198",))
        shown: list[str] = []
        marked = asyncio.Event()

        def on_message(msg: Any) -> None:
            shown.append(str(msg["body"]))
            if shown[-1] == "marker":
                marked.set()

        stayer.add_event_handler("message", on_message)
        stayer.send_presence()
        dropper, dropper_jid = await asyncio.to_thread(
            raw_resource, shared_server, "triple", "dropper", " max='1'")
        quitter, _ = await asyncio.to_thread(raw_resource, shared_server, "triple", "quitter", "")
        # The dropper tells the sender when its session is gone for good.
        dropper.send(f"<presence to='{sender.boundjid.full}'/>")
        await sender_in.wait(presence(None, dropper_jid))

        sender.send_message(mto="triple@localhost", mbody="entry one", mtype="chat")
        sender.send_message(mto=dropper_jid, mbody="for the dropper only", mtype="chat")
        await asyncio.to_thread(dropper.read_until, b"for the dropper only</body>")
        await asyncio.to_thread(quitter.read_until, b"entry one</body>")
        # Neither acknowledges: one quits cleanly, the other loses its connection.
        quitter.send("</stream:stream>")
        await asyncio.to_thread(quitter.read_all)
        dropper.close()
        await sender_in.wait(presence("unavailable", dropper_jid), timeout=10)

        # Everything handed over to the stayer is queued before the marker reaches it.
        sender.send_message(mto=stayer.boundjid.full, mbody="marker", mtype="chat")
        await asyncio.wait_for(marked.wait(), 10)
        # The bare-JID entry once; the message for the lost resource delivered here instead
        # (RFC 6121 §8.5.3.2.1), once.
        assert shown.count("entry one") == 1, shown
        assert shown.count("for the dropper only") == 1, shown
        # And nothing of it waits in offline storage for the next resource.
        stored = await asyncio.to_thread(offline_bodies, shared_server, "triple", "later")
        assert "entry one" not in stored and "for the dropper only" not in stored, stored
        await disconnect(sender, stayer)

    run(scenario())


def test_what_no_resource_received_is_stored_once_with_its_first_stamp(
        shared_server: ServerProcess) -> None:
    shared_server.add_user("lonely")
    sender_jid = shared_server.add_user("lonelysource")

    async def scenario() -> None:
        sender = await slixmpp_client(shared_server, sender_jid, ())
        sender.send_presence()
        sender_in = Inbox(sender)
        dropper, dropper_jid = await asyncio.to_thread(
            raw_resource, shared_server, "lonely", "dropper", " max='1'")
        quitter, _ = await asyncio.to_thread(raw_resource, shared_server, "lonely", "quitter", "")
        dropper.send(f"<presence to='{sender.boundjid.full}'/>")
        await sender_in.wait(presence(None, dropper_jid))

        sender.send_message(mto="lonely@localhost", mbody="nobody acked me", mtype="chat")
        await asyncio.to_thread(dropper.read_until, b"nobody acked me</body>")
        await asyncio.to_thread(quitter.read_until, b"nobody acked me</body>")
        received_by = datetime.datetime.now(datetime.UTC)
        quitter.send("</stream:stream>")
        await asyncio.to_thread(quitter.read_all)
        dropper.close()
        await sender_in.wait(presence("unavailable", dropper_jid), timeout=10)

        raw = RawClient(shared_server)
        try:
            await asyncio.to_thread(_authenticate, raw, "lonely")
            await asyncio.to_thread(_bind, raw, "later")
            raw.send("<presence/><iq type='get' id='done' to='localhost'>"
                     "<ping xmlns='urn:xmpp:ping'/></iq>")
            received = await asyncio.to_thread(raw.read_until, b"id=\"done\"")
        finally:
            raw.close()
        copies = re.findall(r"<message[^>]*>.*?nobody acked me.*?</message>", received, re.S)
        assert len(copies) == 1, received  # two sessions lost it; stored once
        stamps = DELAY_STAMP.findall(copies[0])
        assert len(stamps) == 1, copies[0]
        stamp = datetime.datetime.strptime(stamps[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.UTC)
        # XEP-0198 §4 / XEP-0203: when it was first sent, not when the sessions ended.
        assert stamp <= received_by, (stamp, received_by)
        await disconnect(sender)

    run(scenario())
