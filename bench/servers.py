"""Servers under test: each started by the bench with its own generated config on loopback.

A :class:`ServerUnderTest` knows how to start and stop its process and how to read that
process's CPU time and resident memory from /proc, so every scenario measures both servers the
same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.wire import Target

if TYPE_CHECKING:
    from bench.profile import Recording

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident set size in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServerUnderTest:
    """Common process handling; subclasses write the config and name the command."""

    name = "server"
    domain = "localhost"
    pubsub_domain = "pubsub.localhost"
    publisher = "pub"  # made an admin, so it may create pubsub nodes on both servers

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        # The py-spy recording of the running scenario, if profiling (bench.profile).
        self.recording: Recording | None = None

    @property
    def target(self) -> Target:
        return Target("127.0.0.1", self.port, self.domain)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir, stdout=log,
                                     stderr=subprocess.STDOUT, env=self.environment(),
                                     **self.popen_options())
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def popen_options(self) -> dict[str, Any]:
        """Extra :class:`subprocess.Popen` arguments (e.g. the user to run as)."""
        return {}

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Pubsubd(ServerUnderTest):
    """pubsubd from this repository, plaintext on loopback so it is measured like the others.

    The features the reference servers do not run in the bench (message archive, stream
    management, group chat, feeds, s2s) are off, so every server pays for the same work;
    :class:`PubsubdDefaults` measures the default configuration beside it.
    """

    name = "pubsubd"
    # Scenarios this server runs (None: every one).
    scenarios: frozenset[str] | None = None
    defaults = False

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        var = workdir / "var"
        var.mkdir(exist_ok=True)
        self.config = {
            "domains": [self.domain],
            "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": self.port}],
            "data_dir": str(var),
            "storage": {"path": str(var / "pubsubd.sqlite3")},
            "control": {"socket": str(var / "control.sock")},
            "admins": [f"{self.publisher}@{self.domain}"],
            # Every bench account comes from loopback: no per-address registration limit.
            "registration": {"enabled": True, "rate": 1_000_000},
            "tls": {"require_c2s": False},
            # Same cost as Prosody's internal_hashed with default_iteration_count = 4096.
            "auth": {"allow_plain_without_tls": True, "scram_iterations": 4096},
            "limits": {"connections_per_ip": 1_000_000, "idle_timeout": 3600.0,
                       "outbox_stanzas": 100_000},
            "log": {"level": "WARNING"},
            "feeds": {"enabled": False},
        }
        if not self.defaults:
            for feature in ("mam", "stream_management", "muc", "s2s"):
                self.config[feature] = {"enabled": False}
        self.config_path = workdir / "pubsubd.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pubsubd", "run", "--config", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def version(self) -> str:
        try:
            from importlib.metadata import version

            return f"pubsubd {version('pubsubd')} (Python {sys.version.split()[0]})"
        except Exception:  # noqa: BLE001 - a missing version must not stop a benchmark
            return f"pubsubd (Python {sys.version.split()[0]})"


class PubsubdDefaults(Pubsubd):
    """pubsubd with its default features (message archive and stream management on), for the
    cost of those features on 1:1 chat."""

    name = "pubsubd (defaults)"
    scenarios = frozenset({"messages"})
    defaults = True


class PubsubdPostgres(Pubsubd):
    """The same pubsubd with every store on PostgreSQL: a fresh database of a throw-away
    cluster of Debian's postgresql (the one the tests use), removed when the run ends. Its
    CPU figures count the pubsubd process only, not PostgreSQL's own processes."""

    name = "pubsubd-postgres"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        from tests.pg import new_database

        self.config["storage"] = {"url": new_database()}
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def version(self) -> str:
        from tests.pg import server_bin

        bindir = server_bin()
        release = bindir.parts[-2] if bindir else "?"
        return f"{super().version()}, PostgreSQL {release}"
