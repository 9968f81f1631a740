"""XEP-0115 Entity Capabilities: the server's own caps in its stream features, and a
verified ``ver`` → features cache for clients' caps (used for PEP ``+notify`` filtering).

A client's caps are remembered with its presence; the first time a ``ver`` is seen the server
asks that client's disco#info once and keeps the answer only if it hashes to ``ver`` (§5.4).
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from lxml import etree

from pubsubd import ns
from pubsubd.core.bounded import BoundedMap
from pubsubd.core.context import ServerContext
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.jid import JID
from pubsubd.presence_view import PresenceView
from pubsubd.xml import builders

C = ns.clark(ns.CAPS, "c")
SERVER_NODE = "https://github.com/pubsubd/pubsubd"
HASHES = {"sha-1": hashlib.sha1, "sha-256": hashlib.sha256}
ASKING_MAX = 1000  # disco#info queries about unknown ver strings in flight
ASKING_TIMEOUT = 60.0  # seconds before an unanswered one may be asked again


def verification_string(info: etree._Element) -> str:
    """XEP-0115 §5.1 steps 1–8 from a disco#info <query/>."""
    identities = sorted(
        "/".join((i.get("category", ""), i.get("type", ""), i.get(ns.XML_LANG, ""),
                  i.get("name", "")))
        for i in info.findall(ns.clark(ns.DISCO_INFO, "identity")))
    features = sorted(f.get("var", "") for f in info.findall(ns.clark(ns.DISCO_INFO, "feature")))
    text = "".join(f"{x}<" for x in identities + features)
    forms = []
    for form in info.findall(ns.clark(ns.DATA_FORMS, "x")):
        fields = {}
        for field in form.findall(ns.clark(ns.DATA_FORMS, "field")):
            values = sorted(v.text or "" for v in field.findall(ns.clark(ns.DATA_FORMS, "value")))
            fields[field.get("var", "")] = values
        form_type = (fields.pop("FORM_TYPE", None) or [""])[0]
        body = "".join(f"{var}<" + "".join(f"{v}<" for v in values)
                       for var, values in sorted(fields.items()))
        forms.append((form_type, f"{form_type}<{body}"))
    return text + "".join(body for _, body in sorted(forms))


def caps_hash(info: etree._Element, algo: str = "sha-1") -> str:
    digest = HASHES[algo](verification_string(info).encode()).digest()
    return base64.b64encode(digest).decode()


class CapsModule(Module):
    name = "caps"
    features = (ns.CAPS,)

    def __init__(self, *, ctx: ServerContext, router: Router, hooks: HookBus,
                 disco: DiscoRegistry, presence: PresenceView) -> None:
        super().__init__()
        self.ctx = ctx
        self.router = router
        self.hooks = hooks
        self.disco = disco
        self.presence = presence

    def setup(self) -> None:
        # Filled in once every module has declared its features (see run()).
        self.stream_caps = builders.element(ns.CAPS, "c", hash="sha-1", node=SERVER_NODE, ver="")
        self.ctx.post_auth_features.append(self.stream_caps)
        self.hooks.on("presence/out", self._remember, priority=10)
        # ver strings being asked about; a client that never answers must not pin them.
        self._asking: BoundedMap[str, bool] = BoundedMap(ASKING_MAX, ttl=ASKING_TIMEOUT)

    async def run(self) -> None:
        self.stream_caps.set("ver", caps_hash(self._server_info()))  # §6.3

    def _server_info(self) -> etree._Element:
        info = builders.element(ns.DISCO_INFO, "query")
        for ident in self.disco.identities:
            etree.SubElement(info, ns.clark(ns.DISCO_INFO, "identity"), category=ident.category,
                             type=ident.type, name=ident.name)
        for feature in self.disco.features:
            etree.SubElement(info, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        for form in self.disco.extensions:
            info.append(etree.fromstring(etree.tostring(form)))
        return info

    async def _remember(self, st: Stanza) -> bool:
        session = st.origin
        if session is None or st.type != "available":
            return False
        c = st.element.find(C)
        if c is None or not c.get("ver") or not c.get("node"):
            session.presence.caps = None
            return False
        algo = c.get("hash") or ""
        caps = (c.get("node", ""), c.get("ver", ""), algo)
        session.presence.caps = caps
        known = self.presence.caps_features
        if algo in HASHES and caps[1] not in known and caps[1] not in self._asking:
            await self._ask(session.jid, caps)
        return False

    async def _ask(self, full: JID, caps: tuple[str, str, str]) -> None:
        node, ver, algo = caps
        self._asking[ver] = True
        # XEP-0163 §1.2 (Example 5) and XEP-0115 §6.2: the account is the PEP service that
        # wants the contact's +notify features, so the query comes from its bare JID, not
        # from the domain; the answer is taken by our own unguessable id, and only from the
        # full JID we asked.
        iq = builders.iq("get", to=str(full), from_=str(full.bare),
                         id_=f"caps-{secrets.token_hex(8)}")
        builders.child(iq, ns.DISCO_INFO, "query", node=f"{node}#{ver}")

        async def answered(reply: Stanza) -> None:
            self._asking.pop(ver, None)
            if reply.from_ != full or reply.type != "result" or len(reply.element) == 0:
                return
            info = reply.element[0]
            if caps_hash(info, algo) == ver:  # §5.4: never trust an unverified ver
                features = frozenset(f.get("var", "")
                                     for f in info.findall(ns.clark(ns.DISCO_INFO, "feature")))
                self.presence.caps_features[ver] = features
            else:
                self.log.info("caps ver %s of %s does not match its disco#info", ver, full)

        self.router.iq_result_handlers[iq.get("id", "")] = answered
        await self.router.send(iq)
