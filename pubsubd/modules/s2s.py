"""Federation (RFC 6120 server-to-server, XEP-0220 Server Dialback) as a module.

It installs the router's remote side (stanzas for other domains leave through it) and the
``s2s`` listener kind. The dialback secret is kept under ``data_dir`` unless configured, so keys
handed out before a restart still verify afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from pubsubd.core.module import Module
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

    def __init__(self, server) -> None:  # type: ignore[no-untyped-def]
        super().__init__(server)
        self.service: S2SService | None = None

    def setup(self) -> None:
        config = self.server.config
        if not config.s2s.enabled:
            return
        secret = config.s2s.dialback_secret or load_or_create_secret(
            self.server._path(config.data_dir) / "s2s" / "dialback.secret")
        self.service = S2SService(config.s2s, self.server.router, secret, self.server.ctx.tls,
                                  config.limits.max_stanza_bytes)
        self.server.router.remote = self.service
        self.server.listener_kinds["s2s"] = self.service.handle_incoming

    async def run(self) -> None:
        if self.service is not None:
            await self.service.run()

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.aclose()
