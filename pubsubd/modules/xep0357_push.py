"""XEP-0357 Push Notifications: wake a sleeping phone through its app server.

A client enables an app server's XMPP Push Service (its JID and node, and a publish-options
form that usually carries a secret) for its account (§5) and may disable it (§6); the
registrations are durable, since a phone enables push once and is then asleep. When a message
with a body arrives for the account and no client is there to show it, every registration
gets a pubsub publish of a ``<notification/>`` with a ``urn:xmpp:push:summary`` form (§7).

When is nobody there? We push for a message that is (a) stored offline — no available
resource (RFC 6121 §8.5.2.2) — or (b) queued to a session hibernated by XEP-0198 (its phone
app was suspended and its TCP connection died), unless another of the account's sessions is
connected; when that hibernation expires and hands its messages to offline storage, those
already pushed do not push again. A connected client that is merely inactive (XEP-0352) gets
what matters over its own connection, so a push would only duplicate it. A feed entry its
reader batched (see :mod:`pubsubd.modules.feeds.entry_urgency`) wakes nobody: batched means
"when I look".

Pushes are rate-limited per registration: the first message wakes the phone at once, and the
messages of the next ``push.coalesce`` seconds are counted into one later push
(``message-count``), so a burst of a hundred messages is two wake-ups, not a hundred.

The summary names the last sender; the body goes only when the server's policy allows it
(``push.include_body``) *and* the client asked for it with ``pubsubd#include_body`` in its
enable form (§9: servers SHOULD let users limit what reaches third parties; that field is
not passed on to the app server). An error answer, or none within ``push.timeout``, disables
the registration (§7.1), and so does the push service's affiliation change to "none" (§8).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.config import PushConfig
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID, InvalidJID
from pubsubd.modules.xep0030_disco import DiscoModule
from pubsubd.storage.interfaces import PushRegistration, PushStore
from pubsubd.stream.client_state import Deferrable
from pubsubd.xml import builders
from pubsubd.xml.forms import FORM_TYPE, Field, Form, FormError

log = logging.getLogger(__name__)

PUSH = "urn:xmpp:push:0"
SUMMARY = "urn:xmpp:push:summary"
PUBLISH_OPTIONS = f"{ns.PUBSUB}#publish-options"
BODY_OPT_IN = "pubsubd#include_body"  # ours: never forwarded to the app server
ENABLE = ns.clark(PUSH, "enable")
DISABLE = ns.clark(PUSH, "disable")
_PUBSUB = ns.clark(ns.PUBSUB, "pubsub")
_AFFILIATION = ns.clark(ns.PUBSUB, "affiliation")
_DATA_X = ns.clark("jabber:x:data", "x")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
EVENT_QUEUE = 1000  # messages awaiting a push decision; beyond, the newest are not pushed
# Messages pushed while queued to a hibernated session, remembered (owner, sender, id) so that
# the same message does not push again when the hibernation expires and hands it to offline
# storage; beyond this many, the oldest are forgotten (a second push at worst).
PUSHED_REMEMBERED = 10_000


@dataclass(slots=True)
class _Pending:
    """What one registration has not been told yet, and when it may be woken again."""

    count: int = 0
    sender: str = ""
    body: str = ""
    next_at: float = 0.0
    scheduled: bool = False


@dataclass(frozen=True, slots=True)
class _Arrival:
    owner: str
    sender: str
    body: str


class PushModule(Module):
    name = "push"
    features = ()  # §4.1: advertised on the account's bare JID, not the server's

    def __init__(self, *, settings: PushConfig, store: PushStore, router: Router,
                 hooks: HookBus, sessions: SessionRegistry, disco: DiscoModule) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.router = router
        self.hooks = hooks
        self.sessions = sessions
        self.disco = disco
        self._pending: dict[tuple[str, str, str], _Pending] = {}
        self._send, self._arrivals = trio.open_memory_channel[_Arrival](EVENT_QUEUE)
        self._nursery: trio.Nursery | None = None
        self._watching = False  # messages looked at only while some account enabled push
        self._pushed_while_asleep: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def setup(self) -> None:
        if not self.settings.enabled:
            return
        self.router.add_iq_handler("self", "set", ENABLE, self.enable)
        self.router.add_iq_handler("self", "set", DISABLE, self.disable)
        self.disco.account_features.add(PUSH)  # §4.1: on the account's bare JID
        # Before offline storage takes the message (and declines none of it).
        self.hooks.on("message/offline", self._stored_offline, priority=50)
        self.hooks.on("account/deleted", self._account_deleted)

    def _watch(self, on: bool) -> None:
        """Look at every routed and queued message only while someone has push enabled: with
        no registration, the feature costs nothing per stanza."""
        if on == self._watching:
            return
        self._watching = on
        if on:
            self.hooks.on("message/in", self._remote_disable, priority=60)
            self.sessions.sent_observers.append(self._queued)
        else:
            self.hooks.off("message/in", self._remote_disable)
            self.sessions.sent_observers.remove(self._queued)

    async def _rewatch(self) -> None:
        self._watch(await self.store.any_registered())

    async def run(self) -> None:
        if not self.settings.enabled:
            return
        await self._rewatch()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async for arrival in self._arrivals:
                await self._arrived(arrival)

    # --- §5, §6: enabling and disabling -------------------------------------------------

    async def enable(self, st: Stanza) -> None:
        el = st.element[0]
        service = _service(el)
        form_el = el.find(_DATA_X)
        options = b""
        if form_el is not None:
            if form_el.get("type") is None:
                form_el.set("type", "submit")  # §5's example leaves it out
            try:
                form = Form.from_element(form_el)
            except FormError as exc:
                raise StanzaError(Condition.BAD_REQUEST, str(exc)) from None
            if form.form_type not in (None, PUBLISH_OPTIONS):
                raise StanzaError(Condition.BAD_REQUEST, f"the form must be {PUBLISH_OPTIONS}")
            options = etree.tostring(form_el)
        owner = str(st.from_.bare)
        known = await self.store.registrations(owner)
        node = el.get("node") or ""
        if (len(known) >= self.settings.max_registrations
                and all((r.service, r.node) != (service, node) for r in known)):
            raise StanzaError(Condition.RESOURCE_CONSTRAINT,
                              f"at most {self.settings.max_registrations} push services")
        await self.store.put(PushRegistration(owner, service, node, options))
        self._watch(True)
        self.log.info("push enabled for %s to %s", owner, service,
                      extra={"event": "push.enabled", "jid": owner})
        return None

    async def disable(self, st: Stanza) -> None:
        el = st.element[0]
        node = el.get("node")
        owner = str(st.from_.bare)
        service = _service(el)
        await self.store.remove(owner, service, node or None)
        await self._rewatch()
        for key in [k for k in self._pending if k[:2] == (owner, service)
                    and (not node or k[2] == node)]:
            del self._pending[key]
        return None

    async def _remote_disable(self, st: Stanza) -> bool:
        """§8: the push service took our publish affiliation away; forget that node."""
        pubsub = st.element.find(_PUBSUB)
        if pubsub is None or st.to is None:
            return False
        affiliation = pubsub.find(_AFFILIATION)
        if affiliation is None or affiliation.get("affiliation") != "none":
            return False
        owner = str(st.to.bare)
        if affiliation.get("jid") not in (None, owner):
            return False
        node = pubsub.get("node") or None
        if not await self.store.remove(owner, str(st.from_), node):
            return False  # not about a registration of ours: deliver it as usual
        await self._rewatch()
        self._pending = {k: p for k, p in self._pending.items()
                         if k[:2] != (owner, str(st.from_)) or (node and k[2] != node)}
        self.log.info("push to %s for %s disabled by the push service", st.from_, owner,
                      extra={"event": "push.disabled", "jid": owner})
        return True

    async def _account_deleted(self, jid: JID) -> bool:
        await self.store.forget(str(jid.bare))
        await self._rewatch()
        return False

    # --- what warrants a push -----------------------------------------------------------

    async def _stored_offline(self, st: Stanza) -> bool:
        """A message about to wait in offline storage: nobody is online to read it."""
        if st.to is None or st.deferrable or st.type not in ("normal", "chat"):
            return False
        message_id = st.element.get("id")
        if message_id is not None:
            key = (str(st.to.bare), str(st.from_), message_id)
            if key in self._pushed_while_asleep:
                # Handed over from a hibernated session that expired: pushed when it came.
                del self._pushed_while_asleep[key]
                return False
        body = st.element.find(ns.C_BODY)
        if body is not None:
            self._note(str(st.to.bare), str(st.from_), body.text or "")
        return False  # offline storage still keeps it

    def _queued(self, session: Session, data: bytes) -> None:
        """A stanza queued to a session; only a hibernated one's messages are of interest."""
        if not session.hibernated or isinstance(data, Deferrable):
            return
        if not data.lstrip().startswith(b"<message"):
            return
        bare = session.jid.bare
        if any(not other.hibernated and not other.closed
               for other in self.sessions.resources(bare)):
            return  # the user is connected elsewhere
        try:
            el = etree.fromstring(data, _PARSER)
        except etree.XMLSyntaxError:
            return
        if el.get("type") not in (None, "normal", "chat"):
            return
        body = el.find(ns.C_BODY)
        if body is None:
            body = el.find("body")  # serialized without the jabber:client default namespace
        if body is not None:
            sender, message_id = el.get("from") or "", el.get("id")
            self._note(str(bare), sender, body.text or "")
            if message_id is not None:
                remembered = self._pushed_while_asleep
                remembered[(str(bare), sender, message_id)] = None
                if len(remembered) > PUSHED_REMEMBERED:
                    remembered.popitem(last=False)

    def _note(self, owner: str, sender: str, body: str) -> None:
        try:
            self._send.send_nowait(_Arrival(owner, sender, body))
        except trio.WouldBlock:
            self.log.warning("push queue full; a message for %s wakes no phone", owner)

    # --- §7: publishing, coalesced per registration -------------------------------------

    async def _arrived(self, arrival: _Arrival) -> None:
        for reg in await self.store.registrations(arrival.owner):
            key = (reg.owner, reg.service, reg.node)
            pending = self._pending.setdefault(key, _Pending())
            pending.count += 1
            pending.sender, pending.body = arrival.sender, arrival.body
            if pending.scheduled:
                continue  # counted into the push already planned
            pending.scheduled = True
            assert self._nursery is not None
            self._nursery.start_soon(self._push_when_due, reg, pending)

    async def _push_when_due(self, reg: PushRegistration, pending: _Pending) -> None:
        await trio.sleep_until(pending.next_at)
        key = (reg.owner, reg.service, reg.node)
        if self._pending.get(key) is not pending:
            return  # disabled meanwhile
        pending.scheduled = False
        count, sender, body = pending.count, pending.sender, pending.body
        pending.count = 0
        pending.next_at = trio.current_time() + self.settings.coalesce
        if not await self._publish(reg, count, sender, body):
            # §7.1: an IQ error (or silence) disables this JID and node.
            self._pending.pop(key, None)
            await self.store.remove(reg.owner, reg.service, reg.node)
            await self._rewatch()
            self.log.info("push to %s for %s disabled after a failed publish", reg.service,
                          reg.owner, extra={"event": "push.disabled", "jid": reg.owner})

    async def _publish(self, reg: PushRegistration, count: int, sender: str,
                       body: str) -> bool:
        """Publish one notification; True once the app server answered with a result."""
        options = _options_form(reg.options)
        with_body = (self.settings.include_body and options is not None
                     and _opted_in(options))
        iq = builders.iq("set", to=reg.service, from_=reg.owner)
        pubsub = builders.child(iq, ns.PUBSUB, "pubsub")
        publish = etree.SubElement(pubsub, ns.clark(ns.PUBSUB, "publish"))
        if reg.node:
            publish.set("node", reg.node)
        item = etree.SubElement(publish, ns.clark(ns.PUBSUB, "item"))
        notification = builders.child(item, PUSH, "notification")
        fields = [Field("message-count", values=[str(count)]),
                  Field("last-message-sender", values=[sender])]
        if with_body:
            fields.append(Field("last-message-body", values=[body]))
        notification.append(Form.with_form_type("submit", SUMMARY, fields).to_element())
        forwarded = [f for f in (options.fields if options is not None else [])
                     if f.var not in (FORM_TYPE, BODY_OPT_IN)]
        if forwarded:  # §7: the enable form's data, as publish-options
            publish_options = etree.SubElement(pubsub, ns.clark(ns.PUBSUB, "publish-options"))
            publish_options.append(
                Form.with_form_type("submit", PUBLISH_OPTIONS, forwarded).to_element())

        answered = trio.Event()
        outcome: list[str] = []

        async def on_answer(reply: Stanza) -> None:
            if str(reply.from_) == reg.service:
                outcome.append(reply.type)
                answered.set()

        iq_id = iq.get("id", "")
        self.router.iq_result_handlers[iq_id] = on_answer
        await self.router.send(iq)
        with trio.move_on_after(self.settings.timeout):
            await answered.wait()
        self.router.iq_result_handlers.pop(iq_id, None)
        return outcome == ["result"]


def _service(el: etree._Element) -> str:
    """The 'jid' attribute, which §5 and §6 require, as a normalised JID."""
    raw = el.get("jid")
    if not raw:
        raise StanzaError(Condition.BAD_REQUEST, "the jid of the push service is required")
    try:
        return str(JID.parse(raw))
    except InvalidJID as exc:
        raise StanzaError(Condition.JID_MALFORMED, str(exc)) from None


def _options_form(data: bytes) -> Form | None:
    if not data:
        return None
    try:
        return Form.from_element(etree.fromstring(data, _PARSER))
    except (etree.XMLSyntaxError, FormError):
        return None


def _opted_in(form: Form) -> bool:
    try:
        return form.boolean(BODY_OPT_IN) is True
    except FormError:
        return False
