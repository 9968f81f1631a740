"""Federation (RFC 6120 server-to-server, XEP-0220 Server Dialback) as a module.

It installs the router's remote side (stanzas for other domains leave through it) and the
``s2s`` listener kind. The dialback secret is kept under ``data_dir`` unless configured, so keys
handed out before a restart still verify afterwards.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from pubsubd.config import S2SConfig
from pubsubd.core.module import Module
from pubsubd.core.router import Router
from pubsubd.net.listener import ConnectionHandler
from pubsubd.net.s2s import S2SService
from pubsubd.stream.dialback import new_secret


def load_or_create_secret(path: Path) -> str:
    """Read the persisted dialback secret, creating it (mode 0600) on first use."""
    try:
        secret = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        secret = ""
    if secret:
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secret + "\n")
    return secret


class S2SModule(Module):
    name = "s2s"

    def __init__(self, *, settings: S2SConfig, data_dir: Path, router: Router,
                 tls: ssl.SSLContext | None, max_stanza_bytes: int,
                 listener_kinds: dict[str, ConnectionHandler]) -> None:
        super().__init__()
        self.settings = settings
        self.data_dir = data_dir
        self.router = router
        self.tls = tls
        self.max_stanza_bytes = max_stanza_bytes
        self.listener_kinds = listener_kinds
        self.service: S2SService | None = None

    def setup(self) -> None:
        if not self.settings.enabled:
            return
        secret = self.settings.dialback_secret or load_or_create_secret(
            self.data_dir / "s2s" / "dialback.secret")
        self.service = S2SService(self.settings, self.router, secret, self.tls,
                                  self.max_stanza_bytes)
        self.router.remote = self.service
        self.listener_kinds["s2s"] = self.service.handle_incoming

    async def run(self) -> None:
        if self.service is not None:
            await self.service.run()

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.aclose()
