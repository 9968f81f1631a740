"""``pubsubd component``: the link to the host server, as a module.

It installs :class:`~pubsubd.net.component.HostLink` as the router's remote side and feeds the
presence the host sends into :class:`~pubsubd.host_presence.HostPresenceView`. When a user
subscribes to the service or a feed contact, the JID asks back for the user's presence
(RFC 6121 §3.1): once the user approves, the host sends the user's presence to it (§3.1.5,
§4.2.2), which is what presence-based delivery and catch-up need.
"""

from __future__ import annotations

from pubsubd.config import ComponentOfConfig
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.host_presence import HostPresenceView
from pubsubd.net.component import HostLink
from pubsubd.xml import builders


class ComponentOfModule(Module):
    name = "component_of"

    def __init__(self, *, settings: ComponentOfConfig, router: Router,
                 presence: HostPresenceView, max_stanza_bytes: int) -> None:
        super().__init__()
        self.settings = settings
        self.router = router
        self.presence = presence
        self.link = HostLink(settings, max_stanza_bytes=max_stanza_bytes,
                             on_stanza=self._inbound)

    def setup(self) -> None:
        self.router.remote = self.link

    async def run(self) -> None:
        await self.link.run()

    async def _inbound(self, st: Stanza) -> None:
        if st.kind == "presence":
            await self.presence.observe(st.from_, st.element)
        await self.router.route(st)
        if st.kind == "presence" and st.type == "subscribe" and st.to is not None:
            # Mutual subscription: the host then shares the user's presence with us.
            await self.router.send(builders.stanza("presence", to=str(st.from_.bare),
                                                   from_=str(st.to.bare), type_="subscribe"))
