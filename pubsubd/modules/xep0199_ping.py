"""XEP-0199 XMPP Ping: the server answers pings to itself and on behalf of accounts."""

from __future__ import annotations

from pubsubd import ns
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza

PING = ns.clark(ns.PING, "ping")


class PingModule(Module):
    name = "ping"
    features = (ns.PING,)

    def __init__(self, *, router: Router) -> None:
        super().__init__()
        self.router = router

    def setup(self) -> None:
        self.router.add_iq_handler("host", "get", PING, self.pong)
        self.router.add_iq_handler("self", "get", PING, self.pong)

    async def pong(self, st: Stanza) -> None:
        return None  # XEP-0199 §4.1: an empty result
