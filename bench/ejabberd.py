"""ejabberd (Debian's package) as the second reference server, with a generated loopback config.

Like Prosody it gets a throw-away directory: its YAML config, an empty ``ejabberdctl.cfg``, a
Mnesia spool and its logs, plaintext c2s on a port of its own on 127.0.0.1 with PLAIN allowed,
SCRAM-hashed credentials (4096 iterations, ejabberd's fixed count), in-band registration open
(no per-IP registration delay, so accounts are created as on the other servers), no shapers, no
s2s listener, and a XEP-0060 service on pubsub.<domain>. Its modules mirror the Prosody set.

Debian's ``ejabberdctl`` switches to the ``ejabberd`` user through ``su`` when started by root,
and PAM then lowers the open-files limit to the system default (too few for thousands of
connections); so, under root, the bench starts it as that user itself (inheriting the raised
limit) and hands it the directory; the Erlang node gets a distinct short name per run so it never
meets a system ejabberd, and ``epmd`` (started by the Erlang runtime on first use) stays up after
the run, as it would for any Erlang node. CPU and memory are read from the BEAM process itself
(``beam.smp``), not from the shell scripts that start it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.clients import PASSWORD
from bench.servers import ServerUnderTest

EJABBERDCTL = "ejabberdctl"
USER = "ejabberd"

MODULES = """\
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  mod_register:
    ip_access: all
    access: register
  mod_version:
    show_os: false
  mod_time: {}
  mod_carboncopy: {}
  mod_blocking: {}
  mod_privacy: {}
  mod_offline: {}
  mod_private: {}
  mod_vcard: {}
  mod_last: {}
  mod_caps: {}
  mod_pubsub:
    hosts: ["pubsub.@HOST@"]
    access_createnode: pubsub_createnode
    plugins: ["flat", "pep"]
    ignore_pep_from_offline: true
    last_item_cache: false
    max_items_node: 1000
"""


def installed() -> bool:
    return shutil.which(EJABBERDCTL) is not None


def _version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "ejabberd"],
                             capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


class Ejabberd(ServerUnderTest):
    name = "ejabberd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.node = f"bench{self.port}@localhost"
        self.spool = workdir / "spool"
        self.logs = workdir / "logs"
        for d in (self.spool, self.logs):
            d.mkdir(exist_ok=True)
        (workdir / "ejabberdctl.cfg").write_text("")
        (workdir / "inetrc").write_text('{lookup, ["file", "native"]}.\n'
                                        '{hosts_file, "/etc/hosts"}.\n')
        self.config_path = workdir / "ejabberd.yml"
        self.config_path.write_text(f"""\
hosts: ["{self.domain}"]
loglevel: warning
log_rotate_count: 0
hide_sensitive_log_data: true
certfiles: []
listen:
  - port: {self.port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 1048576
    shaper: none
    access: c2s
    starttls_required: false
acl:
  admin:
    user: "{self.publisher}@{self.domain}"
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
  pubsub_createnode:
    allow: local
  configure:
    allow: admin
shaper_rules:
  max_user_sessions: 100000
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
auth_method: internal
auth_password_format: plain
registration_timeout: infinity
s2s_access: all
modules:
{MODULES}""")
        self._beam: int | None = None
        self._hand_over()

    def _hand_over(self) -> None:
        """Let the ``ejabberd`` user (ejabberdctl's run-as user under root) use the directory."""
        if os.geteuid() != 0:
            return
        try:
            entry = pwd.getpwnam(USER)
        except KeyError:
            return
        for parent in (self.workdir.parent, self.workdir):
            parent.chmod(0o755)
        for root, dirs, files in os.walk(self.workdir):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)

    def _ctl(self) -> list[str]:
        return [EJABBERDCTL, "--config-dir", str(self.workdir), "--config",
                str(self.config_path), "--ctl-config", str(self.workdir / "ejabberdctl.cfg"),
                "--spool", str(self.spool), "--logs", str(self.logs), "--node", self.node]

    def command(self) -> list[str]:
        return [*self._ctl(), "foreground"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["EJABBERD_BYPASS_WARNINGS"] = "true"
        user = self._user()
        if user is not None:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        return env

    @staticmethod
    def _user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(USER)
        except KeyError:
            return None

    def popen_options(self) -> dict[str, Any]:
        user = self._user()
        if user is None:
            return {}
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 90.0) -> None:
        super().start(timeout)
        self._beam = self._find_beam()
        # The publisher (an admin) is created with ejabberd's own tool; the bench's other
        # accounts come by in-band registration, as on the other servers.
        self.ctl("register", self.publisher, self.domain, PASSWORD)

    def ctl(self, *args: str) -> str:
        out = subprocess.run([*self._ctl(), *args], capture_output=True, text=True,
                             timeout=60, env=self.environment(), check=False,
                             **self.popen_options())
        return (out.stdout + out.stderr).strip()

    def _find_beam(self) -> int:
        """The BEAM process of our node: its command line names the node."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                    comm = (entry / "comm").read_text().strip()
                except OSError:
                    continue
                if comm.startswith("beam") and self.node.encode() in cmdline:
                    return int(entry.name)
            time.sleep(0.2)
        raise RuntimeError(f"no beam.smp process found for {self.node}")

    @property
    def pid(self) -> int:
        if self._beam is None:
            self._beam = self._find_beam()
        return self._beam

    def alive(self) -> bool:
        return self._beam is not None and Path(f"/proc/{self._beam}").exists()

    def stop(self, timeout: float = 30.0) -> None:
        if self._beam is not None:
            try:
                os.kill(self._beam, signal.SIGTERM)  # the BEAM shuts down cleanly on SIGTERM
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while Path(f"/proc/{self._beam}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            if Path(f"/proc/{self._beam}").exists():
                os.kill(self._beam, signal.SIGKILL)
        super().stop(timeout)

    def version(self) -> str:
        return f"ejabberd {_version()}"

    def log_tail(self, chars: int = 4000) -> str:
        text = super().log_tail(chars)
        for name in ("ejabberd.log", "error.log", "crash.log"):
            try:
                text += (self.logs / name).read_text(errors="replace")[-chars:]
            except OSError:
                pass
        return text
