"""Features nobody uses put no hook on the path of a message (issue 11, deliverable 4).

Blocking, carbons and push register their message hooks while someone uses them and take them off
again afterwards; the stanza counters hook in only when a metrics listener can read them.
The server is composed in process and driven through its router with IQs of a bound session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from lxml import etree

from pubsubd import ns
from pubsubd.app import Server
from pubsubd.config import loads
from pubsubd.core.session import Session
from pubsubd.jid import JID
from pubsubd.xml import builders

MESSAGE_HOOKS = ("message/pre", "message/in")


def make_server(tmp_path: Path, extra: str = "") -> Server:
    config = loads(f"""
domains: [example.test]
data_dir: {tmp_path / "var"}
storage: {{path: {tmp_path / "var" / "db.sqlite3"}}}
control: {{enabled: false}}
mam: {{enabled: false}}
{extra}
""")
    return Server(config, base_dir=tmp_path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path)
    yield srv
    srv.services.stores.close()


def hooked(srv: Server) -> set[str]:
    return {event for event in (*MESSAGE_HOOKS, "iq/pre") if srv.ctx.hooks.has(event)}


async def request(srv: Server, session: Session, payload: etree._Element,
                  recv: trio.MemoryReceiveChannel[bytes]) -> etree._Element:
    """Send ``payload`` in an IQ set from ``session``; return the answer it gets."""
    iq = builders.iq("set")
    iq.append(payload)
    await srv.ctx.router.route_from_client(session, iq)
    while True:
        answer = etree.fromstring(await recv.receive())
        if answer.get("id") == iq.get("id"):
            return answer


def bound(srv: Server, jid: str) -> tuple[Session, trio.MemoryReceiveChannel[bytes]]:
    send, recv = trio.open_memory_channel[bytes](100)
    session = Session(JID.parse(jid), send, lambda error: None)
    srv.ctx.sessions.add(session)
    return session, recv


def test_nothing_hooks_messages_when_no_feature_is_used(server: Server) -> None:
    assert hooked(server) == set()


def test_carbons_hook_messages_only_while_someone_has_them_on(server: Server) -> None:
    async def scenario() -> None:
        alice, alice_in = bound(server, "alice@example.test/desk")
        enable = builders.element(ns.CARBONS, "enable")
        answer = await request(server, alice, enable, alice_in)
        assert answer.get("type") == "result"
        assert hooked(server) == set(MESSAGE_HOOKS)
        answer = await request(server, alice, builders.element(ns.CARBONS, "disable"), alice_in)
        assert answer.get("type") == "result"
        assert hooked(server) == set()

    trio.run(scenario)


def test_push_watches_messages_only_while_someone_enabled_it(server: Server) -> None:
    push = "urn:xmpp:push:0"

    async def scenario() -> None:
        carol, carol_in = bound(server, "carol@example.test/phone")
        enable = builders.element(push, "enable", jid="push.example.net", node="n1")
        assert (await request(server, carol, enable, carol_in)).get("type") == "result"
        assert hooked(server) == {"message/in"}
        disable = builders.element(push, "disable", jid="push.example.net")
        assert (await request(server, carol, disable, carol_in)).get("type") == "result"
        assert hooked(server) == set()

    trio.run(scenario)


def test_blocking_hooks_stanzas_only_while_a_blocklist_is_not_empty(tmp_path: Path) -> None:
    srv = make_server(tmp_path)

    async def scenario() -> None:
        bob, bob_in = bound(srv, "bob@example.test/phone")
        block = builders.element(ns.BLOCKING, "block")
        etree.SubElement(block, ns.clark(ns.BLOCKING, "item"), jid="eve@example.test")
        assert (await request(srv, bob, block, bob_in)).get("type") == "result"
        assert hooked(srv) == {"message/pre", "iq/pre"}

    trio.run(scenario)
    srv.services.stores.close()
    # A restarted server filters from the start: the blocklist was stored.
    again = make_server(tmp_path)
    try:
        assert hooked(again) == {"message/pre", "iq/pre"}

        async def unblock_all() -> None:
            bob, bob_in = bound(again, "bob@example.test/phone")
            unblock = builders.element(ns.BLOCKING, "unblock")  # §3.4: everything
            assert (await request(again, bob, unblock, bob_in)).get("type") == "result"
            assert hooked(again) == set()

        trio.run(unblock_all)
    finally:
        again.services.stores.close()


def test_stanza_counters_hook_in_with_a_metrics_listener(tmp_path: Path) -> None:
    srv = make_server(tmp_path, "listeners: [{kind: c2s, port: 0}, {kind: metrics, port: 0}]")
    try:
        assert hooked(srv) == {"message/pre", "iq/pre"}
    finally:
        srv.services.stores.close()
