"""XEP-0114 Jabber Component Protocol, accepting side, as a module.

It registers one :class:`~pubsubd.net.component.ExternalComponent` per configured component
domain with the router (from start-up on, so stanzas to a component that is not connected
bounce instead of leaving by federation), lists them in the server's disco#items (XEP-0030
§4.1), and serves the ``component`` listener kind.
"""

from __future__ import annotations

import trio

from pubsubd.config import ComponentConfig
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.module import Module
from pubsubd.core.router import Router
from pubsubd.net.component import AcceptedComponent, ExternalComponent
from pubsubd.net.listener import ConnectionHandler


class ComponentsModule(Module):
    name = "components"

    def __init__(self, *, components: dict[str, ComponentConfig], router: Router,
                 disco: DiscoRegistry, listener_kinds: dict[str, ConnectionHandler],
                 max_stanza_bytes: int, handshake_timeout: float) -> None:
        super().__init__()
        self.settings = components
        self.router = router
        self.disco = disco
        self.listener_kinds = listener_kinds
        self.max_stanza_bytes = max_stanza_bytes
        self.handshake_timeout = handshake_timeout
        self.pools: dict[str, ExternalComponent] = {}

    def setup(self) -> None:
        for domain, settings in self.settings.items():
            pool = ExternalComponent(domain, subdomains=settings.subdomains,
                                     max_connections=settings.max_connections)
            self.pools[domain] = pool
            self.router.add_component(pool, subdomains=settings.subdomains)
            self.disco.items.append((domain, None, None))
        self.listener_kinds["component"] = self.handle

    async def handle(self, stream: trio.abc.Stream, peer: str) -> None:
        secrets = {domain: s.secret for domain, s in self.settings.items()}
        await AcceptedComponent(stream, peer, router=self.router, pools=self.pools,
                                secrets_by_domain=secrets,
                                max_stanza_bytes=self.max_stanza_bytes,
                                handshake_timeout=self.handshake_timeout).run()
