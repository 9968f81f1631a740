"""Running a client as an ordinary user with a throw-away HOME.

Clients such as Poezio refuse to run as root, which is how CI runs the tests; as root, the
client runs as :data:`CLIENT_USER` (created when missing) through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

CLIENT_USER = "pubsubd-client"


@dataclass(frozen=True, slots=True)
class ClientAccount:
    """Where and as whom a client runs: ``argv_prefix`` switches to the user, if needed."""

    home: Path
    uid: int
    gid: int
    argv_prefix: tuple[str, ...]

    def give(self, path: Path) -> None:
        """Hand ``path`` (and what is below it) to the client's user."""
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)
        os.chown(path, self.uid, self.gid)


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # Tests running side by side may both add it: whoever loses finds it afterwards.
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                   capture_output=True, timeout=30)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"could not create the unprivileged user {name!r} for the client",
                    pytrace=False)


@contextmanager
def client_account(keep_in: Path) -> Iterator[ClientAccount]:
    """A fresh HOME for one client run; afterwards it is copied to ``keep_in/home``.

    As root, HOME lies outside pytest's temporary directory (which only root may enter) and
    belongs to :data:`CLIENT_USER`; otherwise it is ``keep_in/home`` itself.
    """
    if os.geteuid() != 0:
        home = keep_in / "home"
        home.mkdir(parents=True)
        yield ClientAccount(home, os.getuid(), os.getgid(), ())
        return
    user = _ensure_user(CLIENT_USER)
    home = Path(tempfile.mkdtemp(prefix="pubsubd-client-"))
    account = ClientAccount(home, user.pw_uid, user.pw_gid,
                            ("runuser", "-u", CLIENT_USER, "--"))
    account.give(home)
    try:
        yield account
    finally:
        try:
            shutil.copytree(home, keep_in / "home", symlinks=True, dirs_exist_ok=True)
        except shutil.Error:
            pass  # sockets and the like: the logs and settings that matter were copied
        shutil.rmtree(home, ignore_errors=True)
