"""The router finds a component by its domain, and by a parent's when it takes subdomains."""

from __future__ import annotations

from pubsubd.core.hooks import HookBus
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import SessionRegistry
from pubsubd.jid import JID


class NoAccounts:
    async def exists(self, jid: JID) -> bool:
        return False


class Named:
    def __init__(self, domain: str) -> None:
        self.domain = domain

    async def receive(self, stanza: Stanza) -> None:
        pass


def test_component_for_own_domain_and_configured_subdomains() -> None:
    router = Router(["example.org"], SessionRegistry(), HookBus(), NoAccounts())
    bridge, bots = Named("bridge.example.org"), Named("bots.example.org")
    router.add_component(bridge)
    router.add_component(bots, subdomains=True)
    assert router.component_for("bridge.example.org") is bridge
    assert router.component_for("irc.bridge.example.org") is None  # no subdomains for it
    assert router.component_for("irc.bots.example.org") is bots
    assert router.component_for("a.b.bots.example.org") is bots
    assert router.component_for("example.org") is None
