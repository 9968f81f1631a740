"""Chat-type feed entries under Client State Indication (XEP-0352): batched or urgent, as the
reader chose by saying so to the feeds contact; a person's chat always goes out at once.

Alice follows a feed from two resources at the same priority, so every entry is routed to
both in one step: "laptop" stays active and shows that the entries were delivered; "phone"
is inactive, and a ping answered to it (queued after the entries) shows what it got by then.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss  # noqa: E402
from harness import RawClient, ServerProcess  # noqa: E402

CSI = "urn:xmpp:csi:0"
FEEDS = "feeds@pubsub.localhost"
RSS = "application/rss+xml"
ONLY_REFRESH = {**FEEDS_EXTRA, "default_interval": 3600.0, "min_interval": 3600.0,
                "max_interval": 3600.0}  # only ``feeds refresh`` polls


@pytest.fixture
def web() -> Iterator[ThreadedFeedServer]:
    with ThreadedFeedServer() as server:
        server.set("/news.xml", rss("News", []), content_type=RSS)
        yield server


@pytest.fixture
def srv(tmp_path: Path, web: ThreadedFeedServer) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, extra={"feeds": ONLY_REFRESH})
    proc.start()
    for user in ("alice", "bob"):
        proc.add_user(user)
    try:
        yield proc
    finally:
        proc.stop()


def online(srv: ServerProcess, local: str, resource: str) -> tuple[RawClient, str]:
    client = RawClient(srv)
    jid = client.login(local, resource=resource)
    client.send("<presence/>")
    return client, jid


def say(client: RawClient, text: str, expect: bytes) -> str:
    client.send(f"<message type='chat' to='{FEEDS}'><body>{text}</body></message>")
    return client.read_until(expect)


def synced(client: RawClient, iq_id: str) -> str:
    """What the server queued to the client before the answer to this ping."""
    client.send(f"<iq type='get' id='{iq_id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    return client.read_until(f"id=\"{iq_id}\"".encode()) + client.read_until(b">")


def publish(srv: ServerProcess, web: ThreadedFeedServer, guids: list[str]) -> None:
    web.set("/news.xml", rss("News", guids), content_type=RSS)
    srv.cli("feeds", "refresh", web.url("/news.xml"), "--json", check=False)


def test_batched_entries_wait_for_active_urgent_ones_and_people_do_not(
        srv: ServerProcess, web: ThreadedFeedServer) -> None:
    laptop, _ = online(srv, "alice", "laptop")
    phone, phone_jid = online(srv, "alice", "phone")
    bob, _ = online(srv, "bob", "desk")
    assert "Subscribed" in say(laptop, f"subscribe {web.url('/news.xml')}", b"Subscribed")
    synced(phone, "p0")

    # Default: batched. The phone goes inactive; entries reach the laptop, not the phone.
    phone.send(f"<inactive xmlns='{CSI}'/>")
    synced(phone, "p1")
    publish(srv, web, ["n2", "n1"])
    on_laptop = laptop.read_until(b"Entry n2")
    assert on_laptop.index("Entry n1") < on_laptop.index("Entry n2")
    bob.send(f"<message type='chat' to='{phone_jid}'><body>from a person</body></message>")
    held = phone.read_until(b"from a person")  # a person's message: at once
    held += synced(phone, "p2")
    assert "Entry" not in held

    phone.send(f"<active xmlns='{CSI}'/>")
    released = phone.read_until(b"Entry n2")  # all of them, in their order
    assert released.index("Entry n1") < released.index("Entry n2")

    # Urgent: the next entry reaches the inactive phone at once.
    say(phone, "urgent", b"Feed entries are urgent")
    phone.send(f"<inactive xmlns='{CSI}'/>")
    synced(phone, "p3")
    publish(srv, web, ["n3", "n2", "n1"])
    laptop.read_until(b"Entry n3")
    assert "Entry n3" in synced(phone, "p4")

    # And back to batched: the choice is the reader's, per account.
    say(phone, "batched", b"Feed entries are batched")
    publish(srv, web, ["n4", "n3", "n2", "n1"])
    laptop.read_until(b"Entry n4")
    assert "Entry n4" not in synced(phone, "p5")
    for client in (laptop, phone, bob):
        client.close()


def test_a_carbon_copy_of_a_batched_entry_waits_as_well(
        srv: ServerProcess, web: ThreadedFeedServer) -> None:
    """The phone (negative priority: bare-JID messages skip it) gets entries as XEP-0280 carbon
    copies; while it is inactive, the copies of batched entries wait like the entries."""
    laptop, _ = online(srv, "alice", "laptop")
    phone = RawClient(srv)
    phone.login("alice", resource="phone")
    phone.send("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    phone.read_until(b'id="c1"')
    phone.send("<presence><priority>-1</priority></presence>")
    assert "Subscribed" in say(laptop, f"subscribe {web.url('/news.xml')}", b"Subscribed")
    synced(phone, "p0")

    phone.send(f"<inactive xmlns='{CSI}'/>")
    synced(phone, "p1")
    publish(srv, web, ["n1"])
    laptop.read_until(b"Entry n1")
    assert "Entry n1" not in synced(phone, "p2")
    phone.send(f"<active xmlns='{CSI}'/>")
    released = phone.read_until(b"Entry n1")
    assert "urn:xmpp:carbons:2" in released
    laptop.close()
    phone.close()


def test_help_names_the_choice(srv: ServerProcess) -> None:
    client, _ = online(srv, "alice", "laptop")
    text = say(client, "help", b"this text")
    assert "\n  urgent " in text and "\n  batched " in text
    client.close()


def test_the_choice_as_an_ad_hoc_command(srv: ServerProcess) -> None:
    client, _ = online(srv, "alice", "laptop")
    commands = "http://jabber.org/protocol/commands"

    def execute(iq_id: str) -> str:
        client.send(f"<iq type='set' id='{iq_id}' to='pubsub.localhost'><command "
                    f"xmlns='{commands}' node='feeds/delivery' action='execute'/></iq>")
        return client.read_until(f"id=\"{iq_id}\"".encode()) + client.read_until(b"</iq>")

    form = execute("c1")
    assert "<value>batched</value>" in form.split("<option")[0]  # the default, preselected
    session = form.split("sessionid=\"")[1].split("\"")[0]
    client.send(f"<iq type='set' id='c2' to='pubsub.localhost'><command xmlns='{commands}' "
                f"node='feeds/delivery' action='complete' sessionid='{session}'>"
                "<x xmlns='jabber:x:data' type='submit'><field var='entries'>"
                "<value>urgent</value></field></x></command></iq>")
    done = client.read_until(b"id=\"c2\"") + client.read_until(b"</iq>")
    assert "completed" in done and "Feed entries are urgent" in done
    assert "<value>urgent</value>" in execute("c3").split("<option")[0]
    client.close()
