"""External components (XEP-0114) accepted by our server: slixmpp's ComponentXMPP and raw
sockets against the real server."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import RawSocket, ServerProcess, connect, disconnect, run

SECRET = "component-secret"
COMPONENTS = {
    "bridge.localhost": {"secret": SECRET},
    "solo.localhost": {"secret": SECRET, "max_connections": 1},
    "pool.localhost": {"secret": SECRET, "max_connections": 2},
    "gone.localhost": {"secret": SECRET},
    "bots.localhost": {"secret": SECRET, "subdomains": True},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("components"), extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
                      {"kind": "component", "address": "127.0.0.1", "port": 0}],
        "components": COMPONENTS,
    })
    proc.start()
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


async def component(server: ServerProcess, domain: str, secret: str = SECRET) -> Any:
    """A slixmpp component, connected and accepted (handshake answered)."""
    import slixmpp

    comp = slixmpp.ComponentXMPP(domain, secret, "127.0.0.1", server.port("component"))
    comp.register_plugin("xep_0030")
    comp.register_plugin("xep_0199")
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    comp.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    comp.connect()
    await asyncio.wait_for(started, 15)
    return comp


class RawComponent(RawSocket):
    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port("component")), timeout=10)
        self.buffer = b""

    def open(self, domain: str) -> str:
        self.sock.sendall(
            f"<stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>".encode())
        header = self.read_until(b">", timeout=10)
        while "<stream:stream" not in header:
            header += self.read_until(b">")
        match = re.search(r"id=[\"']([^\"']+)", header)
        return match.group(1) if match else ""

    def handshake(self, stream_id: str, secret: str) -> None:
        value = hashlib.sha1((stream_id + secret).encode()).hexdigest()
        self.sock.sendall(f"<handshake>{value}</handshake>".encode())


def test_message_and_iq_both_ways(server: ServerProcess) -> None:
    alice_jid = server.add_user("alice")

    async def scenario() -> None:
        comp = await component(server, "bridge.localhost")
        alice = await connect(server, alice_jid)
        to_comp: asyncio.Queue[Any] = asyncio.Queue()
        comp.add_event_handler("message", to_comp.put_nowait)
        to_alice: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("message", to_alice.put_nowait)

        alice.send_message(mto="echo@bridge.localhost", mbody="hello component", mtype="chat")
        msg = await asyncio.wait_for(to_comp.get(), 5)
        assert msg["body"] == "hello component"
        assert msg["from"].full == alice.boundjid.full

        comp.send_message(mto=alice.boundjid.full, mfrom="echo@bridge.localhost",
                          mbody="hello user", mtype="chat")
        reply = await asyncio.wait_for(to_alice.get(), 5)
        assert (reply["body"], reply["from"].full) == ("hello user", "echo@bridge.localhost")

        # IQs: the user pings the component, the component pings the user and the server.
        await alice.plugin["xep_0199"].ping("bridge.localhost", timeout=5)
        await comp.plugin["xep_0199"].ping(alice.boundjid.full, ifrom="bridge.localhost",
                                           timeout=5)
        await comp.plugin["xep_0199"].ping("localhost", ifrom="bridge.localhost", timeout=5)

        items = await alice.plugin["xep_0030"].get_items(jid="localhost", timeout=5)
        jids = {item[0] for item in items["disco_items"]["items"]}
        assert set(COMPONENTS) <= jids
        await disconnect(alice, comp)

    run(scenario())


def test_forged_from_ends_the_stream_with_invalid_from(server: ServerProcess) -> None:
    raw = RawComponent(server)
    raw.handshake(raw.open("solo.localhost"), SECRET)
    raw.read_until(b"handshake")
    raw.sock.sendall(b"<message from='admin@localhost' to='alice@localhost'><body>x</body>"
                     b"</message>")
    assert "<invalid-from" in raw.read_all()
    raw.close()


def test_wrong_secret_is_not_authorized(server: ServerProcess) -> None:
    raw = RawComponent(server)
    raw.handshake(raw.open("bridge.localhost"), "not the secret")
    rest = raw.read_all()
    assert "<not-authorized" in rest and "</stream:stream>" in rest
    raw.close()


def test_unknown_domain_is_host_unknown(server: ServerProcess) -> None:
    raw = RawComponent(server)
    raw.open("nobody.localhost")
    assert "<host-unknown" in raw.read_all()
    raw.close()


def test_one_connection_too_many_is_a_conflict(server: ServerProcess) -> None:
    first = RawComponent(server)
    first.handshake(first.open("solo.localhost"), SECRET)
    first.read_until(b"handshake")
    second = RawComponent(server)
    second.handshake(second.open("solo.localhost"), SECRET)
    assert "<conflict" in second.read_all()
    second.close()
    first.close()


def test_stanzas_bounce_once_the_component_is_gone(server: ServerProcess) -> None:
    bob_jid = server.add_user("bob")

    async def scenario() -> None:
        bob = await connect(server, bob_jid)
        comp = await component(server, "gone.localhost")
        await bob.plugin["xep_0199"].ping("gone.localhost", timeout=5)  # reachable
        await disconnect(comp)
        server.wait_for_log("component gone.localhost disconnected")
        errors: asyncio.Queue[Any] = asyncio.Queue()
        bob.add_event_handler("message_error", errors.put_nowait)
        bob.send_message(mto="someone@gone.localhost", mbody="anyone?", mtype="chat")
        error = await asyncio.wait_for(errors.get(), 5)
        assert error["error"]["condition"] == "service-unavailable"
        await disconnect(bob)

    run(scenario())


def test_two_connections_share_the_load_by_sender(server: ServerProcess) -> None:
    users = [server.add_user(f"load{i}") for i in range(8)]

    async def scenario() -> None:
        comps = [await component(server, "pool.localhost") for _ in range(2)]
        received: list[list[str]] = [[], []]
        for index, comp in enumerate(comps):
            comp.add_event_handler("message",
                                   lambda msg, i=index: received[i].append(msg["from"].bare))
        clients = [await connect(server, jid) for jid in users]
        for _round in range(2):
            for client in clients:
                client.send_message(mto="pool.localhost", mbody="hi", mtype="chat")
        deadline = asyncio.get_running_loop().time() + 10
        while len(received[0]) + len(received[1]) < 2 * len(users):
            assert asyncio.get_running_loop().time() < deadline, received
            await asyncio.sleep(0.02)
        assert received[0] and received[1]  # both processes get work
        assert not set(received[0]) & set(received[1])  # one sender, one process
        await disconnect(*clients, *comps)

    run(scenario())


def test_subdomains_reach_the_component(server: ServerProcess) -> None:
    carol_jid = server.add_user("carol")

    async def scenario() -> None:
        comp = await component(server, "bots.localhost")
        carol = await connect(server, carol_jid)
        to_comp: asyncio.Queue[Any] = asyncio.Queue()
        comp.add_event_handler("message", to_comp.put_nowait)
        to_carol: asyncio.Queue[Any] = asyncio.Queue()
        carol.add_event_handler("message", to_carol.put_nowait)
        carol.send_message(mto="room@irc.bots.localhost", mbody="hi room", mtype="chat")
        assert (await asyncio.wait_for(to_comp.get(), 5))["to"].bare == "room@irc.bots.localhost"
        comp.send_message(mto=carol.boundjid.full, mfrom="room@irc.bots.localhost",
                          mbody="hi carol", mtype="chat")
        assert (await asyncio.wait_for(to_carol.get(), 5))["from"].bare == \
            "room@irc.bots.localhost"
        await disconnect(carol, comp)

    run(scenario())



def test_shutdown_tells_components(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "component", "address": "127.0.0.1", "port": 0}],
        "components": {"bridge.localhost": {"secret": SECRET}},
    })
    proc.start()
    raw = RawComponent(proc)
    raw.handshake(raw.open("bridge.localhost"), SECRET)
    raw.read_until(b"handshake")
    assert proc.stop() == 0
    rest = raw.read_all()
    assert "<system-shutdown" in rest and rest.endswith("</stream:stream>")
    raw.close()
