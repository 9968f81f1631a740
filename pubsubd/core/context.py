"""What a connection needs from the running server, in one object passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

if TYPE_CHECKING:
    import ssl

    from pubsubd.auth_throttle import AuthThrottle
    from pubsubd.config import Config
    from pubsubd.core.hooks import HookBus
    from pubsubd.core.router import Router
    from pubsubd.core.session import SessionRegistry
    from pubsubd.storage.accounts import AccountStore


@dataclass(slots=True)
class ServerContext:
    config: Config
    router: Router
    sessions: SessionRegistry
    hooks: HookBus
    accounts: AccountStore
    throttle: AuthThrottle
    tls: ssl.SSLContext | None
    tls_cert_der: bytes | None = None  # for tls-server-end-point channel binding (RFC 5929 §4)
    # Stream features modules add once a client is authenticated (e.g. roster versioning).
    post_auth_features: list[etree._Element] = field(default_factory=list)
    # Registration (XEP-0077) may run before authentication; the module installs this hook.
    pre_auth_iq: dict[str, object] = field(default_factory=dict)
    shutting_down: bool = False
