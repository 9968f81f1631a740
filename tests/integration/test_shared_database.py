"""Two ``pubsubd component`` instances on one PostgreSQL database behind one host.

The host balances a component's traffic over its connections by the sender's bare JID, so one
user's requests always reach the same instance: here the node's owner and subscriber reaches
the first instance to connect (A) and the publisher the second (B). B caches the node's
subscriptions when it first publishes; the subscription made through A afterwards must count at
B's next publish (the owner sends it right after A's answer, which may well be before B hears
A's NOTIFY), and the configuration changed through A must apply to B's next publish.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ServerProcess, connect, disconnect, run

from tests.pg import new_database, require_postgres

from .pubsub_helpers import EVENT, OWNER, PUBSUB, item_ids, message_queue, next_event, no_event
from .pubsub_helpers import raw_iq as iq
from .test_components_mode import ComponentProcess

SECRET = "shared-database-secret"
SERVICE = "pubsub.localhost"
OWNER_USER, PUBLISHER = "bob", "alice"  # reach the first and the second instance, see below
FORM = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>" \
       "<value>http://jabber.org/protocol/pubsub#node_config</value></field>{}</x>"


def field(var: str, value: str) -> str:
    return f"<field var='pubsub#{var}'><value>{value}</value></field>"


def link_of(user: str, links: int = 2) -> int:
    """Which of the host's component connections carries ``user``'s stanzas (the host picks by
    the CRC-32 of the bare JID, connections in the order they joined)."""
    return zlib.crc32(f"{user}@localhost".encode()) % links


@pytest.fixture
def host_and_instances(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[ComponentProcess]]]:
    require_postgres()
    database = new_database()
    (tmp_path / "host").mkdir()
    host = ServerProcess(tmp_path / "host", extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
                      {"kind": "component", "address": "127.0.0.1", "port": 0}],
        "components": {SERVICE: {"secret": SECRET}},
        "pubsub": {"enabled": False},
        "feeds": {"enabled": False},
    })
    host.start()
    instances: list[ComponentProcess] = []
    try:
        for name in ("a", "b"):  # one after the other: A is the host's first connection
            (tmp_path / name).mkdir()
            instance = ComponentProcess(tmp_path / name, extra={
                "listeners": [],
                "component_of": {"host": "127.0.0.1", "port": host.port("component"),
                                 "domain": SERVICE, "secret": SECRET},
                "feeds": {"enabled": False},
                "storage": {"url": database},
            })
            instances.append(instance)
            instance.start()
        yield host, instances
    finally:
        for proc in (*instances, host):
            if proc.alive():
                proc.kill()


def test_subscribe_through_one_instance_publish_through_the_other(
        host_and_instances: tuple[ServerProcess, list[ComponentProcess]]) -> None:
    host, _ = host_and_instances
    assert (link_of(OWNER_USER), link_of(PUBLISHER)) == (0, 1)
    owner_jid, publisher_jid = host.add_user(OWNER_USER), host.add_user(PUBLISHER)

    async def publish(client: object, item_id: str) -> None:
        await iq(client, SERVICE, "set",
                 f"<pubsub xmlns='{PUBSUB}'><publish node='shared'><item id='{item_id}'>"
                 f"<entry xmlns='http://www.w3.org/2005/Atom'><title>{item_id}</title></entry>"
                 "</item></publish></pubsub>")

    async def scenario() -> None:
        owner = await connect(host, owner_jid)
        publisher = await connect(host, publisher_jid)
        events = message_queue(owner)
        # Through A: the node, open to any publisher, sending no last item on subscription.
        await iq(owner, SERVICE, "set",
                 f"<pubsub xmlns='{PUBSUB}'><create node='shared'/><configure>"
                 + FORM.format(field("publish_model", "open")
                               + field("send_last_published_item", "never"))
                 + "</configure></pubsub>")
        # Through B: a publish nobody hears, which leaves B with the node's (no) subscriptions.
        await publish(publisher, "before")
        # Through A: the subscription; B's next publish must reach it, once.
        await iq(owner, SERVICE, "set",
                 f"<pubsub xmlns='{PUBSUB}'><subscribe node='shared' jid='{owner_jid}'/>"
                 "</pubsub>")
        await publish(publisher, "first")
        event = await next_event(events)
        assert item_ids(event) == ["first"]
        assert event.find(f".//{{{EVENT}}}item/{{http://www.w3.org/2005/Atom}}entry") is not None
        # Through A: notifications without payloads from now on; B applies it.
        await iq(owner, SERVICE, "set",
                 f"<pubsub xmlns='{OWNER}'><configure node='shared'>"
                 + FORM.format(field("deliver_payloads", "0")) + "</configure></pubsub>")
        await publish(publisher, "second")
        event = await next_event(events)
        assert item_ids(event) == ["second"]
        assert event.find(f".//{{{EVENT}}}item/{{http://www.w3.org/2005/Atom}}entry") is None
        await no_event(events, owner)  # exactly one notification of each
        await disconnect(owner, publisher)

    run(scenario())
