"""The composition root: every shared service, then every module, in load order.

Each module receives, as keyword arguments, exactly what it uses; modules never look each other
up. The order below is the load order: a module's ``setup`` runs right after it is built, and
a module that needs another is built after it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import trio

from pubsubd.auth_throttle import AuthThrottle
from pubsubd.config import Config
from pubsubd.core.context import ServerContext
from pubsubd.core.control_ops import ControlOps
from pubsubd.core.disco_registry import DiscoRegistry, Identity
from pubsubd.core.hooks import HookBus
from pubsubd.core.lifecycle import ServerLifecycle
from pubsubd.core.module import Module
from pubsubd.core.router import Router
from pubsubd.core.session import SessionRegistry
from pubsubd.host_presence import HostPresenceView
from pubsubd.jid import JID
from pubsubd.metrics import Metrics
from pubsubd.modules.component_of import ComponentOfModule
from pubsubd.modules.control_socket import ControlSocketModule
from pubsubd.modules.feeds.admin_commands import ServiceAdminModule
from pubsubd.modules.feeds.module import FeedsModule, instance_id
from pubsubd.modules.metrics_http import MetricsModule
from pubsubd.modules.node_feeds_http import NodeFeedsModule
from pubsubd.modules.rfc6121_presence import PresenceModule
from pubsubd.modules.rfc6121_roster import RosterModule
from pubsubd.modules.s2s import S2SModule
from pubsubd.modules.shared_state import SharedStateModule
from pubsubd.modules.websub_hub import WebSubHubModule
from pubsubd.modules.websub_subscriber import WebSubSubscriberModule
from pubsubd.modules.xep0012_last import LastActivityModule
from pubsubd.modules.xep0030_disco import DiscoModule
from pubsubd.modules.xep0045_muc import MucComponent
from pubsubd.modules.xep0049_private import PrivateStorageModule
from pubsubd.modules.xep0050_commands import CommandsModule
from pubsubd.modules.xep0054_vcard import VCardModule
from pubsubd.modules.xep0060_pubsub import PubSubComponent
from pubsubd.modules.xep0077_register import RegisterModule
from pubsubd.modules.xep0092_version import VersionModule
from pubsubd.modules.xep0114_components import ComponentsModule
from pubsubd.modules.xep0115_caps import CapsModule
from pubsubd.modules.xep0133_admin import AdminModule
from pubsubd.modules.xep0157_server_contacts import ServerContactsModule
from pubsubd.modules.xep0160_offline import OfflineModule
from pubsubd.modules.xep0163_pep import PepModule
from pubsubd.modules.xep0191_blocking import BlockingModule, blocked_by
from pubsubd.modules.xep0199_ping import PingModule
from pubsubd.modules.xep0202_time import TimeModule
from pubsubd.modules.xep0215_external_services import ExternalServicesModule
from pubsubd.modules.xep0280_carbons import CarbonsModule
from pubsubd.modules.xep0313_mam import MamModule
from pubsubd.modules.xep0357_push import PushModule
from pubsubd.modules.xep0363_upload import UploadModule
from pubsubd.net.http_routes import HttpRoutes
from pubsubd.net.listener import ConnectionHandler, Listener
from pubsubd.net.tls import ensure_self_signed, server_context
from pubsubd.rate_limit import RateLimiter
from pubsubd.storage import Stores, open_stores
from pubsubd.storage.accounts import AccountStore
from pubsubd.storage.interfaces import Invalidation

if TYPE_CHECKING:
    from pubsubd.app import Server
    from pubsubd.net.c2s import C2SConnection

M = TypeVar("M", bound=Module)


class KnownAccounts:
    """The router's view of accounts: does a local user exist?

    Asked for every stanza to a local user, so the answer avoids the database when it can: a
    user with a bound session exists, and accounts seen once are remembered until deleted.
    """

    def __init__(self, store: AccountStore, sessions: SessionRegistry, hooks: HookBus,
                 invalidation: Invalidation) -> None:
        self.store = store
        self.sessions = sessions
        self._known: set[JID] = set()
        hooks.on("account/deleted", self._forget)
        invalidation.subscribe("account", self._deleted_elsewhere)

    async def _deleted_elsewhere(self, key: str | None) -> None:
        """Another instance on the database deleted the account (None: perhaps any)."""
        if key is None:
            self._known.clear()
        else:
            self._known.discard(JID.parse(key).bare)

    async def exists(self, jid: JID) -> bool:
        if jid.local is None:
            return False
        bare = jid.bare
        if bare in self._known or self.sessions.resources(bare):
            return True
        if await self.store.get(jid.local, jid.domain) is None:
            return False
        if len(self._known) > 100_000:
            self._known.clear()
        self._known.add(bare)
        return True

    async def _forget(self, jid: JID) -> bool:
        self._known.discard(jid.bare)
        return False


@dataclass
class Services:
    """What the server shares with its modules; built once by :func:`build_services`."""

    config: Config
    base_dir: Path  # relative paths of the configuration are relative to it
    stores: Stores
    hooks: HookBus
    sessions: SessionRegistry
    router: Router
    disco: DiscoRegistry
    metrics: Metrics  # Prometheus counters and gauges any module may feed
    control_ops: ControlOps  # operations of the local control socket (`pubsubd admin`)
    throttle: AuthThrottle
    ctx: ServerContext  # what each connection needs
    lifecycle: ServerLifecycle
    # Listener kinds served by modules (e.g. "metrics" → an HTTP handler), set during setup.
    listener_kinds: dict[str, ConnectionHandler] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)  # bound when the server runs
    connections: set[C2SConnection] = field(default_factory=set)  # open client streams
    # Paths modules serve on HTTP (node feeds, WebSub): on ``http`` and ``metrics`` listeners.
    http_routes: HttpRoutes = field(default_factory=HttpRoutes)

    def path(self, value: str) -> Path:
        """A configured path, relative ones taken from :attr:`base_dir`."""
        return resolve(self.base_dir, value)


def resolve(base_dir: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def load_tls(config: Config, base_dir: Path) -> tuple[ssl.SSLContext, bytes]:
    """The server's TLS context and its certificate in DER (for channel binding); a
    self-signed certificate under ``data_dir`` when none is configured."""
    cfg = config.tls
    if cfg.certificate and cfg.key:
        cert, key = resolve(base_dir, cfg.certificate), resolve(base_dir, cfg.key)
    else:
        cert, key = ensure_self_signed(resolve(base_dir, config.data_dir), list(config.domains))
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    return server_context(cert, key), der


def build_services(config: Config, base_dir: Path) -> Services:
    stores = open_stores(config, base_dir)
    hooks = HookBus()
    sessions = SessionRegistry()
    router = Router(config.domains, sessions, hooks,
                    KnownAccounts(stores.accounts, sessions, hooks, stores.invalidation))
    disco = DiscoRegistry()
    disco.identities.append(Identity("server", "im", "pubsubd"))
    auth = config.auth
    # Only consulted on connections, i.e. inside the trio run: the trio clock is right.
    throttle = AuthThrottle(auth.failures_before_delay, auth.failure_window, 0.5,
                            auth.max_delay, trio.current_time)
    tls, cert_der = load_tls(config, base_dir)
    ctx = ServerContext(config, router, sessions, hooks, stores.accounts, throttle, tls, cert_der)
    return Services(config=config, base_dir=base_dir, stores=stores, hooks=hooks,
                    sessions=sessions, router=router, disco=disco, metrics=Metrics(),
                    control_ops=ControlOps(), throttle=throttle, ctx=ctx,
                    lifecycle=ServerLifecycle())


def build_modules(s: Services, server: Server) -> None:
    """Build, register (``server.add_module``: disco features, then ``setup``) and order every
    module."""
    add: Callable[[M], M] = server.add_module
    config, stores = s.config, s.stores
    router, hooks, sessions = s.router, s.hooks, s.sessions

    # Server-level services.
    disco = add(DiscoModule(router=router, registry=s.disco))
    add(PingModule(router=router))
    add(VersionModule(router=router, show_os=config.server_info.version_shows_os))
    add(TimeModule(router=router))
    add(RegisterModule(open_registration=config.registration.enabled, ctx=s.ctx, router=router,
                       accounts=stores.accounts, hooks=hooks, sessions=sessions,
                       rate=RateLimiter(config.registration.rate,
                                        config.registration.rate_window)))
    commands = add(CommandsModule(router=router, disco=disco,
                                  primary_domain=config.primary_domain))
    admin = add(AdminModule(config=config, accounts=stores.accounts, hooks=hooks,
                            sessions=sessions, connections=s.connections, rosters=stores.im,
                            motd=stores.motd, commands=commands, control_ops=s.control_ops,
                            lifecycle=s.lifecycle))

    async def motd_changed(key: str | None) -> None:  # by another instance
        admin.motd = await stores.motd.get()

    stores.invalidation.subscribe("motd", motd_changed)
    add(MetricsModule(settings=config.metrics, metrics=s.metrics, sessions=sessions,
                      hooks=hooks, throttle=s.throttle, storage_ping=stores.ping,
                      lifecycle=s.lifecycle, listeners=s.listeners,
                      listener_kinds=s.listener_kinds, routes=s.http_routes,
                      exposed=any(spec.kind == "metrics" for spec in config.listeners)))
    s.listener_kinds["http"] = s.http_routes.serve
    add(ControlSocketModule(enabled=config.control.enabled,
                            socket_path=s.path(config.control.socket), ops=s.control_ops))
    # Federation: the router's remote side and the s2s listener.
    add(S2SModule(settings=config.s2s, data_dir=s.path(config.data_dir), router=router,
                  tls=s.ctx.tls, max_stanza_bytes=config.limits.max_stanza_bytes,
                  listener_kinds=s.listener_kinds))
    # External components (XEP-0114) and the component listener.
    add(ComponentsModule(components=config.components, router=router, disco=s.disco,
                         listener_kinds=s.listener_kinds,
                         max_stanza_bytes=config.limits.max_stanza_bytes,
                         handshake_timeout=config.limits.handshake_timeout))

    # Instant messaging (RFC 6121 and the XEPs clients expect of it).
    roster = add(RosterModule(store=stores.im, router=router, hooks=hooks, sessions=sessions,
                              ctx=s.ctx, max_items=config.limits.roster_max_items))
    presence = add(PresenceModule(store=stores.im, roster=roster, router=router, hooks=hooks,
                                  sessions=sessions, accounts=stores.accounts, ctx=s.ctx))
    view = presence.view
    add(OfflineModule(store=stores.im, presence=view, hooks=hooks, sessions=sessions,
                      metrics=s.metrics, max_messages=config.limits.offline_max_messages))
    add(BlockingModule(store=stores.im, presence=presence, router=router, hooks=hooks,
                       sessions=sessions))
    add(CarbonsModule(router=router, hooks=hooks, sessions=sessions))
    add(CapsModule(ctx=s.ctx, router=router, hooks=hooks, disco=s.disco, presence=view))
    add(VCardModule(store=stores.im, router=router))
    add(LastActivityModule(router=router, presence=view, accounts=stores.accounts,
                           lifecycle=s.lifecycle))
    add(PrivateStorageModule(store=stores.private, router=router, hooks=hooks, disco=disco,
                             max_bytes=config.limits.private_xml_bytes))
    add(MamModule(settings=config.mam, store=stores.mam, rosters=stores.im, router=router,
                  hooks=hooks, sessions=sessions, disco=disco))
    # Push notifications to the app servers of sleeping phones (XEP-0357).
    add(PushModule(settings=config.push, store=stores.push, router=router, hooks=hooks,
                   sessions=sessions, disco=disco))

    # Components and PEP.
    blocked = blocked_by(stores.im)  # XEP-0191 for what skips the router's filters
    pubsub = add(PubSubComponent(config=config, store=stores.pubsub, router=router,
                                 sessions=sessions, hooks=hooks, presence=view,
                                 disco_registry=s.disco, blocked=blocked))
    add(MucComponent(settings=config.muc, primary_domain=config.primary_domain,
                     admins=config.admins, store=stores.muc, archive_store=stores.mam,
                     router=router, disco=s.disco,
                     max_rooms_per_user=config.limits.max_rooms_per_user))
    pep = add(PepModule(store=stores.pubsub, router=router, sessions=sessions, hooks=hooks,
                        presence=view, disco=disco,
                        max_payload_bytes=config.pubsub.max_payload_bytes,
                        domains=config.domains, blocked=blocked))
    add(SharedStateModule(invalidation=stores.invalidation, services=lambda jid: (
        pubsub.service if pubsub.enabled and jid == pubsub.domain else pep.loaded(jid))))
    # Nodes on the web (Atom, RSS, JSON Feed) and our WebSub hub pushing them.
    node_feeds = add(NodeFeedsModule(settings=config.http, pubsub=pubsub, routes=s.http_routes,
                                     hub_enabled=config.websub.hub))
    add(WebSubHubModule(settings=config.websub, feeds=node_feeds, pubsub=pubsub,
                        store=stores.websub, routes=s.http_routes))

    # What the server tells clients about itself, and HTTP file upload.
    add(ServerContactsModule(disco=s.disco, contacts=config.server_info.contacts))
    add(ExternalServicesModule(router=router, services=config.server_info.external_services,
                               domains=config.domains))
    add(UploadModule(settings=config.upload, primary_domain=config.primary_domain,
                     domains=config.domains,
                     listener_kinds_configured=[spec.kind for spec in config.listeners],
                     data_dir=s.path(config.data_dir), store=stores.uploads, router=router,
                     disco=s.disco, tls=s.ctx.tls, listeners=s.listeners,
                     listener_kinds=s.listener_kinds))

    add_feed_modules(s, server, pubsub=pubsub, roster=roster, commands=commands)


def add_feed_modules(s: Services, server: Server, *, pubsub: PubSubComponent,
                     roster: RosterModule | None, commands: CommandsModule | None) -> None:
    """The feed service (its nodes live on pubsub.<domain>) and its administration; the same
    in a server of our own and in ``pubsubd component``."""
    add: Callable[[M], M] = server.add_module
    config, stores = s.config, s.stores
    router, hooks, sessions = s.router, s.hooks, s.sessions
    service = pubsub if pubsub.enabled else None
    feeds_cfg = config.feeds
    admins = frozenset(config.admins)
    # WebSub: feeds whose hub pushes are polled rarely; pushed documents go to the poller.
    push = add(WebSubSubscriberModule(settings=config.websub, http=config.http,
                                      feeds=config.feeds, store=stores.websub,
                                      routes=s.http_routes))
    feeds = add(FeedsModule(
        settings=feeds_cfg, pubsub=service, router=router, roster=roster,
        store=stores.feeds, contact_store=stores.feed_contacts, mark_store=stores.feed_marks,
        room_store=stores.room_feeds, private_store=stores.private,
        metrics=s.metrics, control_ops=s.control_ops, admins=admins,
        max_items=config.pubsub.max_items,
        catalogue=s.path(feeds_cfg.catalogue) if feeds_cfg.catalogue else None,
        push=push.subscriber,
        leases=stores.lease_feeds(instance_id(feeds_cfg)) if stores.lease_feeds else None))

    async def feed_contacts_changed(key: str | None) -> None:  # by another instance
        if feeds.manager is not None:
            await feeds.contacts.load()

    s.stores.invalidation.subscribe("feed_contact", feed_contacts_changed)
    add(ServiceAdminModule(feeds=feeds, pubsub=service, commands=commands,
                           control_ops=s.control_ops, hooks=hooks, metrics=s.metrics,
                           sessions=sessions, admins=admins))


# --- ``pubsubd component``: the pubsub and feed service as a component of another server -----

def component_mode_config(config: Config) -> Config:
    """The configuration of a component run: ``component_of.domain`` (``pubsub.example.org``)
    is served as pubsub's ``<subdomain>.<domain>``, users of ``example.org`` count as local for
    node creation, and nothing listens but metrics (no clients, no federation, no MUC)."""
    of = config.component_of
    assert of is not None, "validated by the caller"
    subdomain, _, parent = of.domain.partition(".")
    return replace(
        config, domains=(parent,),
        listeners=tuple(spec for spec in config.listeners if spec.kind == "metrics"),
        pubsub=replace(config.pubsub, enabled=True, subdomain=subdomain),
        s2s=replace(config.s2s, enabled=False), muc=replace(config.muc, enabled=False),
        components={})


def build_component_modules(s: Services, server: Server) -> None:
    """The modules of ``pubsubd component`` (config from :func:`component_mode_config`): the
    link to the host, pubsub on the component's domain, the feed service, metrics and the
    control socket. The router serves only the component's domain: every user is remote and
    reached through the host."""
    add: Callable[[M], M] = server.add_module
    config, stores, router = s.config, s.stores, s.router
    of = config.component_of
    assert of is not None
    router.domains = frozenset({of.domain})
    presence = HostPresenceView(s.sessions, stores.im)
    add(ComponentOfModule(settings=of, router=router, presence=presence,
                          max_stanza_bytes=config.limits.max_stanza_bytes))
    add(MetricsModule(settings=config.metrics, metrics=s.metrics, sessions=s.sessions,
                      hooks=s.hooks, throttle=s.throttle, storage_ping=stores.ping,
                      lifecycle=s.lifecycle, listeners=s.listeners,
                      listener_kinds=s.listener_kinds,
                      exposed=any(spec.kind == "metrics" for spec in config.listeners)))
    add(ControlSocketModule(enabled=config.control.enabled,
                            socket_path=s.path(config.control.socket), ops=s.control_ops))
    pubsub = add(PubSubComponent(config=config, store=stores.pubsub, router=router,
                                 sessions=s.sessions, hooks=s.hooks, presence=presence,
                                 disco_registry=s.disco))
    add(SharedStateModule(invalidation=stores.invalidation, services=lambda jid: (
        pubsub.service if jid == pubsub.domain else None)))
    add_feed_modules(s, server, pubsub=pubsub, roster=None, commands=None)
