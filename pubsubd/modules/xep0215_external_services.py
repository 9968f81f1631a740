"""XEP-0215 External Service Discovery: the STUN/TURN servers clients use for calls.

Services come from the configuration (none by default) and are given to local users only:
TURN credentials let anyone relay traffic. A service with a ``secret`` gets fresh
time-limited credentials on every request, the scheme TURN servers call "use-auth-secret"
(username ``expiry:user``, password ``base64(HMAC-SHA1(secret, username))``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable

from lxml import etree

from pubsubd.config import ExternalService
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.xml import builders

EXTDISCO = "urn:xmpp:extdisco:2"
SERVICES = f"{{{EXTDISCO}}}services"
CREDENTIALS = f"{{{EXTDISCO}}}credentials"


def turn_credentials(secret: str, user: str, expires: int) -> tuple[str, str]:
    """The time-limited username and password a TURN server with this shared secret accepts."""
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class ExternalServicesModule(Module):
    name = "external_services"
    features = (EXTDISCO,)

    def __init__(self, *, router: Router, services: Iterable[ExternalService],
                 domains: Iterable[str], clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.router = router
        self.services = tuple(services)
        self.domains = frozenset(domains)
        self.clock = clock

    def setup(self) -> None:
        self.router.add_iq_handler("host", "get", SERVICES, self.list_services)
        self.router.add_iq_handler("host", "get", CREDENTIALS, self.credentials)

    def _check_local(self, st: Stanza) -> None:
        if st.from_.local is None or st.from_.domain not in self.domains:
            raise StanzaError(Condition.FORBIDDEN, "external services are for local users")

    async def list_services(self, st: Stanza) -> etree._Element:
        """§3.2: every service, or those of the requested type."""
        self._check_local(st)
        wanted = st.element[0].get("type")
        answer = builders.element(EXTDISCO, "services")
        if wanted:
            answer.set("type", wanted)
        for service in self.services:
            if not wanted or service.type == wanted:
                answer.append(self._service(service, str(st.from_.bare)))
        return answer

    async def credentials(self, st: Stanza) -> etree._Element:
        """§3.3: credentials of one service, named by host (and type)."""
        self._check_local(st)
        asked = st.element[0].find(f"{{{EXTDISCO}}}service")
        if asked is None:
            raise StanzaError(Condition.BAD_REQUEST, "name a service")
        answer = builders.element(EXTDISCO, "credentials")
        for service in self.services:
            if service.host == asked.get("host") and asked.get("type") in (None, service.type):
                answer.append(self._service(service, str(st.from_.bare)))
                return answer
        raise StanzaError(Condition.ITEM_NOT_FOUND)

    def _service(self, service: ExternalService, user: str) -> etree._Element:
        el = etree.Element(f"{{{EXTDISCO}}}service", type=service.type, host=service.host,
                           port=str(service.port))
        if service.transport:
            el.set("transport", service.transport)
        if service.secret is not None:
            expires = int(self.clock() + service.credentials_ttl)
            username, password = turn_credentials(service.secret, user, expires)
            el.set("username", username)
            el.set("password", password)
            el.set("restricted", "1")  # §3.2: the credentials expire
            el.set("expires", datetime.datetime.fromtimestamp(expires, datetime.UTC)
                   .strftime("%Y-%m-%dT%H:%M:%SZ"))  # XEP-0082 DateTime
        elif service.username is not None:
            el.set("username", service.username)
            if service.password is not None:
                el.set("password", service.password)
        return el
