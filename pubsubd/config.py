"""Configuration: YAML → frozen dataclasses, validated once at start-up.

Every section is a dataclass whose type hints *are* the schema: :func:`build` walks them, refuses
unknown keys and wrong types, and names the YAML path of the offending key in a one-line
:class:`ConfigError`. Nothing here is global: the loaded :class:`Config` is passed down.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, phrased for the person editing the file."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket. ``kind``: c2s (STARTTLS), c2s_tls (XEP-0368 direct TLS),
    s2s (federation), metrics (HTTP: Prometheus text and /health), websocket (RFC 7395
    XMPP over WebSocket, plain: loopback only) and websocket_tls (the same over TLS);
    the websocket kinds also answer XEP-0156 host-meta discovery; upload and upload_tls
    serve XEP-0363 HTTP File Upload (plain: loopback only, behind a TLS proxy); http serves
    nodes as feeds and WebSub (also answered by metrics listeners) without the metrics;
    component accepts external components (XEP-0114) configured under ``components``."""

    kind: Literal["c2s", "c2s_tls", "s2s", "metrics", "websocket", "websocket_tls",
                  "upload", "upload_tls", "http", "component"] = "c2s"
    address: str = "127.0.0.1"
    port: int = 5222


@dataclass(frozen=True, slots=True)
class TLSConfig:
    certificate: str | None = None  # PEM file; None → self-signed under data_dir
    key: str | None = None
    # RFC 6120 §5.3.1: STARTTLS mandatory-to-negotiate. Turning this off is only allowed for
    # loopback listeners (tests), so credentials never cross a network in the clear.
    require_c2s: bool = True


@dataclass(frozen=True, slots=True)
class AuthConfig:
    allow_plain_without_tls: bool = False
    scram_iterations: int = 4096
    failures_before_delay: int = 3  # failed attempts (per IP and per account) before slowing down
    max_delay: float = 10.0  # seconds, cap of the exponential slow-down
    failure_window: float = 600.0  # seconds after which failures are forgotten


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    enabled: bool = False  # XEP-0077 in-band registration of new accounts
    # Hardening: accounts one client address may create per rate_window seconds.
    rate: int = 3
    rate_window: float = 3600.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_stanza_bytes: int = 262144
    connections_per_ip: int = 50
    handshake_timeout: float = 30.0  # seconds to finish stream negotiation
    idle_timeout: float = 600.0  # seconds a bound client may stay silent (then connection-timeout)
    keepalive_interval: float = 120.0  # seconds between whitespace keep-alives we send
    outbox_stanzas: int = 2000  # queued stanzas per session before it is cut off
    roster_max_items: int = 1000
    offline_max_messages: int = 200
    resource_conflict: Literal["new_wins", "old_wins", "random_resource"] = "new_wins"
    # Quotas (docs/security.md): what one user may make the server keep or send at once.
    disco_items_page: int = 100  # disco#items answers are pages (XEP-0059) of at most this
    max_nodes_per_user: int = 100  # pubsub nodes a user may own on the service
    private_xml_bytes: int = 65536  # XEP-0049 private XML stored per user
    max_rooms_per_user: int = 50  # MUC rooms a user may own (admins exempt)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    # The backend every store uses (pubsubd/storage/backends.py); memory is for throw-away servers.
    backend: Literal["sqlite", "memory", "postgres"] = "sqlite"
    path: str = "var/pubsubd.sqlite3"
    # PostgreSQL (pubsubd/storage/postgres/): a postgresql:// URL selects it; sqlite:///path
    # is another way to name the SQLite file.
    url: str | None = None
    pool_size: int = 8  # PostgreSQL connections (and worker threads) at most


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class PubSubConfig:
    """The XEP-0060 service (pubsub.<domain>) and PEP."""

    enabled: bool = True
    subdomain: str = "pubsub"  # the service JID is <subdomain>.<domain>
    # Who may create nodes on the service: "admins", "local" (any local user) or "anyone".
    creation_policy: Literal["admins", "local", "anyone"] = "local"
    max_items: int = 100  # default pubsub#max_items of new nodes
    max_payload_bytes: int = 65536
    catch_up_max_items: int = 20  # items held per subscriber and node while away/offline


@dataclass(frozen=True, slots=True)
class FeedsConfig:
    """Feed polling (RSS/Atom into pubsub nodes). Times are in seconds."""

    enabled: bool = True
    # Hosts, addresses or CIDR networks fetched even though they are not public (loopback,
    # private, link-local...); everything non-public is refused otherwise.
    allow_hosts: tuple[str, ...] = ()
    user_subscriptions: bool = True  # users may add new feeds by subscribing to their URL
    max_feeds_per_user: int = 200  # feed subscriptions a user may add through the service
    default_interval: float = 1800.0  # first polling period of a new feed
    min_interval: float = 300.0  # the adaptive period stays within these bounds
    max_interval: float = 86400.0
    error_backoff: float = 300.0  # first retry delay after an error, doubling per failure
    max_error_backoff: float = 21600.0
    host_spacing: float = 1.0  # minimum gap between two requests to one host
    max_body_bytes: int = 5242880  # also counted after decompression
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_concurrent: int = 16  # feeds polled at once
    max_per_host: int = 2  # connections to one host at once
    failing_after: int = 5  # consecutive errors before subscribers are told the feed fails
    # What subscribers hear of the entries already in a feed when it is first polled.
    first_poll: Literal["none", "last", "all"] = "last"
    first_poll_count: int = 3  # for first_poll "last"
    republish_updates: bool = False  # republish an entry whose content changed (same item id)
    catalogue: str | None = None  # OPML file of feeds provisioned at start-up
    serve_samples: bool = False  # serve the shipped sample feeds on 127.0.0.1 (demo setup)
    samples_port: int = 8470
    samples_new_entry_every: float = 180.0  # a generated entry appears in the samples this often
    # The service's command contact is <command_contact>@<pubsub subdomain>.<domain>; each
    # followed feed is a contact <short-name>@... in the roster group contact_group.
    command_contact: str = "feeds"
    contact_group: str = "Feeds"
    entries_on_subscribe: int = 1  # the latest entries sent at once to a new follower
    # Several instances sharing one PostgreSQL database take due feeds on lease (docs/scaling.md).
    instance_id: str | None = None  # name in leases, logs, User-Agent; None: hostname:pid
    lease_seconds: float = 60.0  # a dead instance's feeds are taken over after this long


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus text endpoint and /health (served by a ``metrics`` listener)."""

    enabled: bool = True
    health_max_lag: float = 1.0  # seconds of event-loop lag beyond which /health fails
    health_storage_timeout: float = 2.0  # seconds a trivial storage query may take


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """The local control socket used by ``pubsubd admin``."""

    enabled: bool = True
    socket: str = "var/control.sock"  # created with mode 0600: only the server's account connects


@dataclass(frozen=True, slots=True)
class S2SConfig:
    """Federation with other servers (RFC 6120 server-to-server, XEP-0220 dialback).
    Times are in seconds."""

    enabled: bool = True
    # The dialback key secret (XEP-0185); None → random, kept under data_dir so keys handed
    # out before a restart still verify.
    dialback_secret: str | None = None
    # Fixed addresses of peer domains, {domain: "host:port"}, used before DNS SRV lookups
    # (tests, private federations).
    routes: dict[str, str] = field(default_factory=dict)
    # RFC 6120 §5.3.1 / RFC 7590: refuse federation over unencrypted streams.
    require_tls: bool = True
    # Accept peers whose certificates do not verify (self-signed); dialback then proves the
    # peer's identity (XEP-0220 §1).
    allow_unverified_certificates: bool = True
    connect_timeout: float = 10.0
    handshake_timeout: float = 30.0  # stream, STARTTLS and dialback together
    idle_timeout: float = 600.0  # an unused connection is closed after this long
    max_queue: int = 500  # stanzas held per remote domain while its connection is set up
    # Hardening: addresses found through DNS must be public unless listed here (host names,
    # addresses or CIDR networks); static routes are trusted as written.
    allow_hosts: tuple[str, ...] = ()
    max_pending_verifications: int = 100  # dialback key checks in progress, server-wide
    max_domain_pairs: int = 100  # domain pairs one incoming stream may verify and carry


@dataclass(frozen=True, slots=True)
class MamConfig:
    """XEP-0313 message archives of users' one-to-one chats."""

    enabled: bool = True
    # Archiving preference of users who set none (XEP-0441 <prefs default=...>); "always" keeps
    # every chat, as XEP-0313 §6.1.1 recommends; "roster" only chats with roster contacts.
    default: Literal["always", "roster", "never"] = "always"
    max_messages_per_user: int = 10000  # the oldest are dropped beyond this (XEP-0313 §3.2)
    max_page_size: int = 100  # results sent for one query at most, whatever <max> asks


@dataclass(frozen=True, slots=True)
class StreamManagementConfig:
    """XEP-0198 acks and resumption of client streams."""

    enabled: bool = True
    # Seconds a resumable session whose connection dropped is kept (XEP-0198 §5, "max").
    resume_timeout: float = 300.0
    # Stanzas sent and not yet acknowledged before the session is cut off (memory bound).
    max_unacked: int = 1000


@dataclass(frozen=True, slots=True)
class MucConfig:
    """XEP-0045 multi-user chat rooms at <subdomain>.<domain>."""

    enabled: bool = True
    subdomain: str = "conference"  # the service JID is <subdomain>.<domain>
    # Who may create rooms by entering one that does not exist: "admins", "local" (any local
    # user) or "anyone" (users of other servers too).
    creation_policy: Literal["admins", "local", "anyone"] = "local"
    history_max: int = 20  # groupchat messages a room keeps for late joiners (XEP-0045 §7.2.15)
    max_occupants: int = 200  # upper bound of a room's muc#roomconfig_maxusers
    # Room archives (XEP-0313 on the room JID): the oldest messages beyond this are dropped;
    # a query returns at most archive_max_page messages at once.
    archive_max_messages: int = 10000
    archive_max_page: int = 100


@dataclass(frozen=True, slots=True)
class ContactAddresses:
    """XEP-0157 addresses (mailto:, xmpp:, https: URIs) in the server's disco#info."""

    abuse: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()
    feedback: tuple[str, ...] = ()
    sales: tuple[str, ...] = ()
    security: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    support: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExternalService:
    """One XEP-0215 external service, e.g. a STUN or TURN server for audio/video calls.

    Credentials are either fixed (``username``/``password``) or derived per request from a
    ``secret`` shared with the TURN server (time-limited, the "TURN REST API" scheme)."""

    type: Literal["stun", "stuns", "turn", "turns"] = "stun"
    host: str = ""
    port: int = 3478
    transport: Literal["udp", "tcp"] | None = None
    username: str | None = None
    password: str | None = None
    secret: str | None = None
    credentials_ttl: float = 86400.0  # seconds a secret-derived credential is valid

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("server_info.external_services: every service needs a host")
        if self.secret is not None and (self.username or self.password):
            raise ConfigError(f"server_info.external_services ({self.host}): "
                              "set a secret or a username and password, not both")


@dataclass(frozen=True, slots=True)
class ServerInfoConfig:
    """What the server tells clients about itself and its surroundings."""

    contacts: ContactAddresses = field(default_factory=ContactAddresses)  # XEP-0157
    external_services: tuple[ExternalService, ...] = ()  # XEP-0215 (none by default)
    version_shows_os: bool = False  # XEP-0092: also name the operating system


@dataclass(frozen=True, slots=True)
class UploadConfig:
    """XEP-0363 HTTP File Upload at <subdomain>.<domain>; active when a listener of kind
    upload or upload_tls exists. Files live under data_dir/upload."""

    enabled: bool = True
    subdomain: str = "upload"  # the service JID is <subdomain>.<domain>
    # The URL clients reach the listener at (e.g. https://upload.example.org); null: built
    # from the first upload listener (https for upload_tls) and its address or the service JID.
    public_url: str | None = None
    max_file_bytes: int = 10485760  # the largest file accepted
    quota_bytes: int = 104857600  # stored bytes per account; old files count until they expire
    expire_after: float = 2592000.0  # seconds a file is kept (30 days)
    slot_timeout: float = 300.0  # seconds a requested slot accepts its upload
    secret: str | None = None  # HMAC key of slot URLs; null: random, kept under data_dir


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Nodes readable as web feeds, on ``http`` and ``metrics`` listeners."""

    # The address the web reaches those listeners at (e.g. https://example.org, maybe behind a
    # reverse proxy); feeds name themselves with it and WebSub callbacks live under it.
    public_url: str | None = None
    node_feeds: bool = True  # serve /feeds/<node>.atom, .rss and .json
    # Nodes whose access model is not open are served only to requests with this token
    # (?token=... or Authorization: Bearer ...); None: open nodes only.
    node_feeds_token: str | None = None
    node_feed_items: int = 50  # newest items in a served feed


@dataclass(frozen=True, slots=True)
class WebSubConfig:
    """W3C WebSub: our hub for our own nodes, and subscriptions to the hubs feeds advertise.
    Both need http.public_url. Times are in seconds."""

    hub: bool = True  # act as a hub for our nodes' feeds, at <public_url>/websub/hub
    hub_lease: int = 864000  # lease granted when a subscriber asks for none (10 days)
    hub_min_lease: int = 300
    hub_max_lease: int = 2592000
    hub_max_subscriptions: int = 10000
    hub_timeout: float = 10.0  # for each verification or distribution request
    # Callback hosts, addresses or networks reached although not public (see feeds.allow_hosts).
    hub_allow_callback_hosts: tuple[str, ...] = ()
    subscribe: bool = True  # subscribe to the hubs of polled feeds, at <public_url>/websub/cb/
    lease: int = 86400  # lease asked of remote hubs
    renew_before: float = 3600.0  # renew a lease this long before it expires
    verify_timeout: float = 300.0  # a hub that has not verified by then is considered failed
    poll_interval_with_push: float = 21600.0  # safety-net polling while a hub pushes


@dataclass(frozen=True, slots=True)
class BoshConfig:
    """BOSH (XEP-0124/XEP-0206) at /http-bind on the websocket and websocket_tls listeners."""

    enabled: bool = True
    max_wait: int = 60  # longest a request is held without output (XEP-0124 'wait')
    max_hold: int = 1  # requests the server may hold at once (XEP-0124 'hold')
    inactivity: int = 60  # seconds without a request before the session ends (§10)
    polling: int = 2  # shortest allowed interval between empty polls (§12)
    max_requests: int = 2  # simultaneous requests allowed (§11, at least hold + 1)
    # Browser origins (e.g. https://chat.example.org) whose pages may call /http-bind (CORS);
    # "*" for any; empty: no CORS headers (same-origin pages and non-browser clients only).
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PushConfig:
    """XEP-0357 push notifications to the app servers that clients enable."""

    enabled: bool = True
    # Put the last message's body in the summary, for clients that ask for it in their
    # enable form (pubsubd#include_body); false: a body never leaves for a third party.
    include_body: bool = False
    # Seconds after a push during which further messages are counted into one later push.
    coalesce: float = 30.0
    # Seconds to await the app server's answer; none (or an error) disables the registration.
    timeout: float = 30.0
    max_registrations: int = 10  # app server registrations per account


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    """One external component (XEP-0114) accepted on a ``component`` listener."""

    secret: str = ""  # the shared secret of the handshake; required
    subdomains: bool = False  # also route <anything>.<component domain> to it
    # Processes that may connect for this domain at once; stanzas are spread over them by
    # the sender's bare JID. One more is refused with <conflict/> (XEP-0114 §3).
    max_connections: int = 4


@dataclass(frozen=True, slots=True)
class ComponentOfConfig:
    """``pubsubd component``: serve pubsub (and feeds) as a component of another server."""

    host: str = "127.0.0.1"  # the host server's component port (Prosody, ejabberd: 5347)
    port: int = 5347
    domain: str = ""  # the component's domain on that server, e.g. pubsub.example.org
    secret: str = ""  # the shared secret configured for it there
    reconnect_delay: float = 5.0  # seconds between attempts while the host is unreachable


@dataclass(frozen=True, slots=True)
class Config:
    domains: tuple[str, ...] = ("localhost",)
    listeners: tuple[Listener, ...] = (Listener(),)
    data_dir: str = "var"
    admins: tuple[str, ...] = ()
    tls: TLSConfig = field(default_factory=TLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    log: LogConfig = field(default_factory=LogConfig)
    pubsub: PubSubConfig = field(default_factory=PubSubConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    s2s: S2SConfig = field(default_factory=S2SConfig)
    mam: MamConfig = field(default_factory=MamConfig)
    stream_management: StreamManagementConfig = field(default_factory=StreamManagementConfig)
    muc: MucConfig = field(default_factory=MucConfig)
    server_info: ServerInfoConfig = field(default_factory=ServerInfoConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    websub: WebSubConfig = field(default_factory=WebSubConfig)
    bosh: BoshConfig = field(default_factory=BoshConfig)
    push: PushConfig = field(default_factory=PushConfig)
    components: dict[str, ComponentConfig] = field(default_factory=dict)
    component_of: ComponentOfConfig | None = None

    @property
    def primary_domain(self) -> str:
        return self.domains[0]


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from parsed YAML ``data``, naming ``path`` in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{_join(path, str(key))}: unknown key (known keys: {known})")
    kwargs = {key: _convert(hints[key], value, _join(path, key)) for key, value in data.items()}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        return _convert(others[0], value, path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_kind(value)}")
        return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_kind(value)}")
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            return {str(k): build(args[1], v, _join(path, str(k)))  # type: ignore[arg-type]
                    for k, v in value.items()}
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected a whole number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{path}: must not be negative")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{path}: must not be negative")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: expected a non-empty string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported setting type {hint!r}")  # our bug, still one line


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    names: dict[type, str] = {list: "a list", dict: "a mapping", str: "a string"}
    return names.get(type(value), repr(value))


def validate(config: Config) -> Config:
    """Cross-field checks the types cannot express."""
    from pubsubd.jid import JID, InvalidJID

    if not config.domains:
        raise ConfigError("domains: at least one domain must be served")
    for i, domain in enumerate(config.domains):
        try:
            jid = JID.parse(domain)
        except InvalidJID as exc:
            raise ConfigError(f"domains[{i}]: not a valid domain ({exc})") from None
        if jid.local or jid.resource:
            raise ConfigError(f"domains[{i}]: must be a bare domain, not {domain!r}")
    for i, admin in enumerate(config.admins):
        try:
            jid = JID.parse(admin)
        except InvalidJID as exc:
            raise ConfigError(f"admins[{i}]: not a valid JID ({exc})") from None
        if not jid.local:
            raise ConfigError(f"admins[{i}]: must be a user JID like admin@{config.domains[0]}")
    seen: set[tuple[str, int]] = set()
    for i, listener in enumerate(config.listeners):
        try:
            ip = ipaddress.ip_address(listener.address)
        except ValueError:
            raise ConfigError(
                f"listeners[{i}].address: not an IP address: {listener.address!r}"
            ) from None
        if listener.port > 65535:
            raise ConfigError(f"listeners[{i}].port: must be at most 65535")
        if (listener.address, listener.port) in seen and listener.port != 0:
            raise ConfigError(f"listeners[{i}]: {listener.address}:{listener.port} is used twice")
        seen.add((listener.address, listener.port))
        if listener.kind == "websocket" and not ip.is_loopback:
            # A plain WebSocket cannot negotiate TLS (RFC 7395 §3.9): credentials would cross
            # the network in the clear. On loopback it serves a local TLS-terminating proxy.
            raise ConfigError(
                f"listeners[{i}]: a plain websocket listener must be on loopback (put a "
                f"TLS-terminating proxy in front of it, or use kind websocket_tls)"
            )
        if listener.kind == "upload" and not ip.is_loopback:
            # Slot URLs are capabilities: they must not cross a network in the clear.
            raise ConfigError(f"listeners[{i}]: a plain upload listener must be on loopback "
                              f"(put a TLS-terminating proxy in front of it, or use upload_tls)")
        if listener.kind == "c2s" and not config.tls.require_c2s and not ip.is_loopback:
            raise ConfigError(
                f"tls.require_c2s: may only be false when every c2s listener is on loopback "
                f"(listeners[{i}] is on {listener.address})"
            )
    sm = config.stream_management
    if sm.resume_timeout < 0:
        raise ConfigError("stream_management.resume_timeout: must not be negative")
    if sm.max_unacked < 1:
        raise ConfigError("stream_management.max_unacked: must be at least 1")
    if (config.tls.certificate is None) != (config.tls.key is None):
        raise ConfigError("tls: set both certificate and key, or neither (self-signed)")
    for key in ("certificate", "key"):
        value = getattr(config.tls, key)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"tls.{key}: file not found: {value}")
    for domain, route in config.s2s.routes.items():
        host, sep, port = route.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"s2s.routes.{domain}: expected \"host:port\", not {route!r}")
    _validate_components(config)
    if config.limits.max_stanza_bytes < 10000:
        raise ConfigError("limits.max_stanza_bytes: must be at least 10000 (RFC 6120 §13.12)")
    _validate_hardening(config)
    from pubsubd.storage.backends import UnknownBackend, resolve

    try:
        resolve(config.storage)  # storage.url against storage.backend
    except UnknownBackend as exc:
        raise ConfigError(str(exc)) from None
    return config


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _validate_hardening(config: Config) -> None:
    """Address allow-lists, rate limits and quotas (docs/security.md)."""
    for key, entries in (("feeds.allow_hosts", config.feeds.allow_hosts),
                         ("s2s.allow_hosts", config.s2s.allow_hosts)):
        for i, entry in enumerate(entries):
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                if not _HOST_NAME.fullmatch(entry.strip()):
                    raise ConfigError(f"{key}[{i}]: not a host name, address or CIDR network: "
                                      f"{entry!r}") from None
    feeds = config.feeds
    if feeds.min_interval > feeds.max_interval:
        raise ConfigError("feeds.min_interval: must not exceed feeds.max_interval")
    if not feeds.min_interval <= feeds.default_interval <= feeds.max_interval:
        raise ConfigError("feeds.default_interval: must lie between min_interval and max_interval")
    if feeds.lease_seconds <= 0:
        raise ConfigError("feeds.lease_seconds: must be positive")
    if feeds.error_backoff > feeds.max_error_backoff:
        raise ConfigError("feeds.error_backoff: must not exceed feeds.max_error_backoff")
    limits = config.limits
    if min(limits.disco_items_page, limits.max_nodes_per_user, limits.private_xml_bytes) < 1:
        raise ConfigError("limits: disco_items_page, max_nodes_per_user and private_xml_bytes "
                          "must be at least 1")
    if limits.max_rooms_per_user < 1:
        raise ConfigError("limits.max_rooms_per_user: must be at least 1")
    if config.registration.rate < 0 or config.registration.rate_window <= 0:
        raise ConfigError("registration.rate: must be >= 0, and rate_window > 0")
def _validate_components(config: Config) -> None:
    """XEP-0114 settings: component domains are bare domains of their own, with a secret."""
    from pubsubd.jid import JID, InvalidJID

    for domain, component in config.components.items():
        try:
            jid = JID.parse(domain)
        except InvalidJID as exc:
            raise ConfigError(f"components.{domain}: not a valid domain ({exc})") from None
        if jid.local or jid.resource or jid.domain != domain:
            raise ConfigError(f"components.{domain}: must be a bare lowercase domain")
        if domain in config.domains:
            raise ConfigError(f"components.{domain}: is also in domains; a component needs a "
                              "domain of its own")
        if not component.secret:
            raise ConfigError(f"components.{domain}.secret: required")
        if component.max_connections < 1:
            raise ConfigError(f"components.{domain}.max_connections: must be at least 1")
    of = config.component_of
    if of is not None:
        if not of.domain or "." not in of.domain:
            raise ConfigError("component_of.domain: required, a subdomain of the host server's "
                              "domain such as pubsub.example.org")
        if not of.secret:
            raise ConfigError("component_of.secret: required")
        if not 0 < of.port <= 65535:
            raise ConfigError("component_of.port: must be between 1 and 65535")


def load(path: str | Path) -> Config:
    """Read, parse and validate a YAML config file; raise ConfigError with one clear line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    return loads(text, str(path))


def loads(text: str, source: str = "config") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
    return validate(build(Config, data))
