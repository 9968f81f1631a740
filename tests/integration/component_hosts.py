"""Debian's Prosody and ejabberd as hosts of ``pubsubd component``: each started on loopback
with a generated configuration that accepts our component (XEP-0114) on its component port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from harness import reserved_port

from .test_s2s_prosody import _self_signed

SECRET = "interop-component-secret"


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float,
                   log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited:\n{log.read_text(errors='replace')[-5000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port}:\n"
                       f"{log.read_text(errors='replace')[-5000:]}")


class HostServer:
    domain: str
    c2s_port: int
    component_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def component_domain(self) -> str:
        return f"pubsub.{self.domain}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ProsodyHost(HostServer):
    """Prosody's own way: ``component_ports`` and a ``Component`` with ``component_secret``."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.domain = "prosody.localhost"
        self.c2s_port, self.component_port = reserved_port(), reserved_port()
        cert, key = _self_signed(workdir, self.domain)
        (workdir / "data").mkdir(exist_ok=True)
        self.log_path = workdir / "prosody.log"
        self.config_path = workdir / "prosody.cfg.lua"
        self.config_path.write_text(f"""
run_as_root = true
pidfile = "{workdir}/prosody.pid"
data_path = "{workdir}/data"
plugin_paths = {{}}
log = {{ debug = "{self.log_path}" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
s2s_ports = {{}}
c2s_direct_tls_ports = {{}}
s2s_direct_tls_ports = {{}}
http_ports = {{}}
https_ports = {{}}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "127.0.0.1" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "offline" }}
modules_disabled = {{ "posix"; "s2s" }}
ssl = {{ certificate = "{cert}"; key = "{key}"; }}
VirtualHost "{self.domain}"
Component "{self.component_domain}"
    component_secret = "{SECRET}"
""")

    def add_user(self, local: str, password: str = "password1") -> str:
        accounts = self.workdir / "data" / self.domain.replace(".", "%2e") / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        (accounts / f"{local}.dat").write_text(f'return {{ ["password"] = "{password}"; }};\n')
        return f"{local}@{self.domain}"

    def start(self, timeout: float = 15.0) -> None:
        out = self.workdir / "stdout.log"
        self.proc = subprocess.Popen(["prosody", "--config", str(self.config_path), "-F"],
                                     cwd=self.workdir, stdout=open(out, "ab"),
                                     stderr=subprocess.STDOUT)
        _wait_for_port(self.proc, self.c2s_port, timeout, out)
        _wait_for_port(self.proc, self.component_port, timeout, out)


class EjabberdHost(HostServer):
    """ejabberd started without ``ejabberdctl`` (which wants the system's node name, spool
    and log directories): the Erlang VM runs ``ejabberd`` directly, undistributed
    (``nonode@nohost``: no epmd, no cookie), with Mnesia and the log in the test's directory.
    Accounts are registered at start-up by an ``-eval`` after the application has started."""

    USERS = ("reader",)

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.domain = "ejabberd.localhost"
        self.c2s_port, self.component_port = reserved_port(), reserved_port()
        cert, key = _self_signed(workdir, self.domain)
        (workdir / "spool").mkdir(exist_ok=True)
        self.config_path = workdir / "ejabberd.yml"
        self.config_path.write_text(f"""
hosts: ["{self.domain}"]
loglevel: info
certfiles: ["{cert}", "{key}"]
listen:
  - {{port: {self.c2s_port}, ip: "127.0.0.1", module: ejabberd_c2s, starttls: true}}
  - port: {self.component_port}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      "{self.component_domain}":
        password: "{SECRET}"
auth_method: internal
auth_password_format: plain
default_db: mnesia
s2s_access: none
modules:
  mod_roster: {{}}
  mod_offline: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
""")

    def add_user(self, local: str, password: str = "password1") -> str:
        assert local in self.USERS and password == "password1", "registered at start-up"
        return f"{local}@{self.domain}"

    def start(self, timeout: float = 30.0) -> None:
        out = self.workdir / "stdout.log"
        register = ", ".join(
            f'ok = ejabberd_auth:try_register(<<"{u}">>, <<"{self.domain}">>, <<"password1">>)'
            for u in self.USERS)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir),
               "ERL_LIBS": _ejabberd_libs(),
               "EJABBERD_CONFIG_PATH": str(self.config_path),
               "EJABBERD_LOG_PATH": str(self.workdir / "ejabberd.log")}
        self.proc = subprocess.Popen(
            ["erl", "-noinput", "-mnesia", "dir", f'"{self.workdir / "spool"}"',
             "-s", "ejabberd", "-eval", f'{register}, io:format("accounts ready~n").'],
            cwd=self.workdir, stdout=open(out, "ab"), stderr=subprocess.STDOUT, env=env)
        _wait_for_port(self.proc, self.c2s_port, timeout, out)
        _wait_for_port(self.proc, self.component_port, timeout, out)
        deadline = time.monotonic() + timeout
        while "accounts ready" not in out.read_text(errors="replace"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"ejabberd accounts not created:\n{out.read_text()[-5000:]}")
            time.sleep(0.05)


def _ejabberd_libs() -> str:
    """Where Debian installs ejabberd's Erlang applications (what ejabberdctl sets)."""
    for line in Path("/usr/sbin/ejabberdctl").read_text().splitlines():
        if line.startswith("ERL_LIBS="):
            return line.split("=", 1)[1].strip("'\"")
    return "/usr/lib/x86_64-linux-gnu"
