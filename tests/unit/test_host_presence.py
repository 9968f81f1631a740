"""The presence a component learns from its host server (``pubsubd component``)."""

from __future__ import annotations

import trio
from lxml import etree

from pubsubd.core.session import SessionRegistry
from pubsubd.host_presence import HostPresenceView
from pubsubd.jid import JID
from pubsubd.storage.memory import MemoryImStore


def presence(xml: str) -> etree._Element:
    return etree.fromstring(f"<presence xmlns='jabber:client'>{xml}</presence>")


def unavailable() -> etree._Element:
    return etree.fromstring("<presence xmlns='jabber:client' type='unavailable'/>")


def test_presence_from_the_host_is_tracked_and_announced() -> None:
    async def scenario() -> None:
        view = HostPresenceView(SessionRegistry(), MemoryImStore())
        events: list[tuple[str, str]] = []

        async def on_available(full: JID, show: str) -> None:
            events.append(("available", f"{full} {show}"))

        async def on_unavailable(full: JID) -> None:
            events.append(("unavailable", str(full)))

        view.on_available(on_available)
        view.on_unavailable(on_unavailable)
        phone = JID.parse("ann@example.org/phone")
        assert not view.tracks("ann@example.org")
        await view.observe(phone, presence("<show>away</show><priority>5</priority>"))
        await view.observe(phone, presence("<show>away</show><status>busy</status>"))
        assert view.tracks("ann@example.org")
        assert view.available_resources("ann@example.org") == {phone: "away"}
        assert view.status(phone) == "busy"
        await view.observe(JID.parse("ann@example.org"), presence(""))  # no resource: ignored
        await view.observe(phone, unavailable())
        assert view.available_resources("ann@example.org") == {}
        assert view.tracks("ann@example.org")  # known, and away: delivery may hold for her
        assert events == [("available", "ann@example.org/phone away"),
                          ("unavailable", "ann@example.org/phone")]

    trio.run(scenario)
