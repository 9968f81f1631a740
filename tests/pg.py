"""A throw-away PostgreSQL cluster for tests: Debian's ``postgresql`` package, run by hand.

``initdb`` in a temporary directory, ``pg_ctl`` on a reserved loopback port with its unix socket in
that directory, as a non-root user (PostgreSQL refuses to run as root: tests in CI do), removed
at the end of the session. Each test asks for a fresh database (``CREATE DATABASE ... TEMPLATE
template0``), so no test sees another's rows. Missing PostgreSQL skips, or fails under
``PUBSUBD_REQUIRE_PEERS=1`` like every other real peer (:mod:`tests.peers`).

One cluster serves a whole test process (:func:`shared_cluster`): the contract suites reach it
through the ``pg_url`` fixture, and :mod:`tests.harness` through :func:`new_database` when
``PUBSUBD_TEST_STORAGE=postgres`` runs the integration suite on PostgreSQL.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness import reserved_port
from tests.peers import REQUIRE_ENV, peers_required

SUPERUSER = "pubsubd"
RUN_AS = "postgres"  # the Debian package's system user, when the tests run as root


def server_bin() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` (not on PATH in Debian)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def require_postgres() -> Path:
    """The server binaries' directory; skips (or fails when peers are required) without."""
    bindir = server_bin()
    if bindir is not None:
        return bindir
    reason = "peer not installed: postgresql (Debian package; `make debian-deps`)"
    if peers_required():
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set", pytrace=False)
    pytest.skip(reason)


class Cluster:
    """One running cluster; :meth:`new_database` hands out empty databases as URLs."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="pubsubd-pg-"))
        self.data = self.root / "data"
        self.port = reserved_port()  # PostgreSQL binds it with SO_REUSEADDR
        self._user: pwd.struct_passwd | None = pwd.getpwnam(RUN_AS) if os.getuid() == 0 else None
        self._names = itertools.count(1)
        if self._user is not None:
            os.chmod(self.root, 0o700)
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)

    def _run(self, *args: str) -> None:
        user = self._user.pw_uid if self._user else None
        group = self._user.pw_gid if self._user else None
        result = subprocess.run(args, cwd=self.root, user=user, group=group,
                                extra_groups=[] if user is not None else None,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                  "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        # fsync off: the cluster outlives no test, and a killed *pubsubd* (the crash tests)
        # still leaves every committed transaction in PostgreSQL.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port}"
                   f" -c unix_socket_directories={self.root} -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
                   " -c shared_buffers=16MB")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)


_shared: Cluster | None = None


def shared_cluster() -> Cluster:
    """This process's cluster, started on first use and removed when the process exits."""
    global _shared
    if _shared is None:
        bindir = server_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        cluster = Cluster(bindir)
        cluster.start()
        atexit.register(cluster.stop)
        _shared = cluster
    return _shared


def new_database() -> str:
    """The URL of a new, empty database on this process's cluster."""
    return shared_cluster().new_database()


@pytest.fixture(scope="session")
def pg_cluster() -> Cluster:
    require_postgres()
    return shared_cluster()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh database of the session's cluster."""
    return pg_cluster.new_database()
