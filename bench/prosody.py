"""Prosody (Debian's package) as the reference server, with a generated loopback config.

The config mirrors the pubsubd one: plaintext c2s on loopback with SASL PLAIN allowed,
hashed credentials at 4096 PBKDF2 iterations, in-band registration open, no rate limits, no
s2s, and a XEP-0060 component on pubsub.<domain>. The modules mirror what pubsubd runs in the bench
(carbons, blocking, offline storage, PEP, private storage, vCard, last activity; no message
archive, which pubsubd's default configuration adds in a row of its own), so every server pays
for the same features.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.servers import ServerUnderTest

PROSODY = "prosody"

MODULES = (
    "roster", "saslauth", "disco", "ping", "register", "version", "time",
    "carbons", "blocklist", "offline", "pep", "private", "vcard_legacy", "lastactivity",
)


def installed() -> bool:
    return shutil.which(PROSODY) is not None


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prosody(ServerUnderTest):
    name = "Prosody"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        (workdir / "certs").mkdir(exist_ok=True)  # none needed: plaintext on loopback
        modules = "; ".join(lua_string(m) for m in MODULES)
        self.config_path = workdir / "prosody.cfg.lua"
        self.config_path.write_text(f"""\
run_as_root = true
pidfile = {lua_string(str(workdir / "prosody.pid"))}
data_path = {lua_string(str(data))}
certificates = {lua_string(str(workdir / "certs"))}
plugin_paths = {{ }}
log = {{ warn = {lua_string(str(workdir / "prosody.log"))} }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ {modules} }}
modules_disabled = {{ "s2s"; "s2s_auth_certs"; "tls" }}
admins = {{ {lua_string(f"{self.publisher}@{self.domain}")} }}
authentication = "internal_hashed"
default_iteration_count = 4096
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = true
c2s_timeout = 3600
VirtualHost {lua_string(self.domain)}
Component {lua_string(self.pubsub_domain)} "pubsub"
""")

    def command(self) -> list[str]:
        return [PROSODY, "-F", "--config", str(self.config_path)]

    def version(self) -> str:
        path = Path("/usr/lib/prosody/prosody.version")
        try:
            return "Prosody " + path.read_text().strip()
        except OSError:
            return "Prosody (version unknown)"

    def log_tail(self, chars: int = 4000) -> str:
        text = super().log_tail(chars)
        try:
            text += (self.workdir / "prosody.log").read_text(errors="replace")[-chars:]
        except OSError:
            pass
        return text
