"""Gajim (the GTK Jabber client from Debian) on a virtual X display, driven as a person would.

Gajim refuses to run as root, so when the tests run as root (as CI does) every process of the
desktop — Xvfb, a D-Bus session bus, Gajim — runs as an unprivileged system user created on
demand, with a throw-away HOME. The account is written into a fresh profile before Gajim starts
(its settings SQLite database, plus the server's self-signed certificate in Gajim's own
certificate store, which is how a user who clicked "trust" ends up). What Gajim displayed is read
back from its message archive (``~/.local/share/gajim/logs.db``) and from screenshots.

Gajim is a single-instance GTK application: running ``gajim xmpp:JID?message;body=TEXT`` a second
time on the same session bus hands the link to the running Gajim — the same path as clicking it.
For a conversation already in the sidebar, Gajim brings it to the front and types TEXT into its
message input; the test then presses Enter in the window with xdotool. (For a new JID the link
opens the start-chat dialog instead, whose list settles asynchronously, so the profile lists the
conversations the test uses, as if the user had opened them before.)
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

USER = "pubsubd-client"
NEEDED = {"gajim": "gajim", "Xvfb": "xvfb", "xdotool": "xdotool", "import": "imagemagick",
          "dbus-daemon": "dbus"}
T = TypeVar("T")

# Gajim's archive kinds (gajim.common.const.KindConstant).
CHAT_MSG_RECV = 4
CHAT_MSG_SENT = 6
# The settings database layout Gajim 1.7 creates (user_version 5 needs no migration).
SETTINGS_VERSION = 5
SCREEN = (1024, 600)  # Gajim's main window is sized to fill it (mainwin_width/height)


def require_tools() -> None:
    """Skip (or, under ``PUBSUBD_REQUIRE_PEERS=1`` as in ``make test``, fail) without Gajim."""
    missing = sorted(pkg for binary, pkg in NEEDED.items() if shutil.which(binary) is None)
    if missing:
        message = f"Debian packages needed for the Gajim test: {' '.join(missing)}"
        if os.environ.get("PUBSUBD_REQUIRE_PEERS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@dataclass(frozen=True)
class Identity:
    """Who the desktop processes run as (``uid`` None: as the current, non-root user)."""

    uid: int | None = None
    gid: int | None = None

    def popen_args(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        """Give ``path`` and everything under it to this user."""
        if self.uid is None or self.gid is None:
            return
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), self.uid, self.gid)
        os.chown(path, self.uid, self.gid)


def desktop_identity() -> Identity:
    """The current user, or — under root — the unprivileged test user (created if missing)."""
    if os.geteuid() != 0:
        return Identity()
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        # Another test may create it at the same moment: a failure here is fine if it exists now.
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", USER], capture_output=True, timeout=30)
        entry = pwd.getpwnam(USER)
    return Identity(entry.pw_uid, entry.pw_gid)


def poll(probe: Callable[[], T | None], timeout: float, describe: Callable[[], str]) -> T:
    """``probe()`` until it returns something other than None; fail with ``describe()``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        time.sleep(0.2)


class Desktop:
    """Xvfb and a D-Bus session bus, owned by ``identity``, in a throw-away HOME."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        # Not under the caller's temporary directory: the desktop's user must be able to enter it.
        self.home = Path(tempfile.mkdtemp(prefix="pubsubd-gajim-", dir="/tmp"))
        self.home.chmod(0o700)
        identity.own(self.home)
        self._procs: list[subprocess.Popen[bytes]] = []
        self.display = ""
        self.bus = ""
        if os.geteuid() == 0:
            # An unprivileged Xvfb cannot create the socket directory with the right owner.
            os.makedirs("/tmp/.X11-unix", mode=0o1777, exist_ok=True)
            os.chmod("/tmp/.X11-unix", 0o1777)
        read_fd, write_fd = os.pipe()
        width, height = SCREEN
        self.start(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
                     "-nolisten", "tcp"], pass_fds=(write_fd,))
        os.close(write_fd)
        self.display = ":" + self._read_line(read_fd, "Xvfb did not report its display")
        read_fd, write_fd = os.pipe()
        self.start(["dbus-daemon", "--session", "--nofork", f"--print-address={write_fd}"],
                    pass_fds=(write_fd,))
        os.close(write_fd)
        self.bus = self._read_line(read_fd, "dbus-daemon did not report its address")

    def _read_line(self, fd: int, error: str) -> str:
        data = b""
        deadline = time.monotonic() + 20
        try:
            while not data.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    chunk = os.read(fd, 256)
                    if not chunk:
                        break
                    data += chunk
        finally:
            os.close(fd)
        if not data.strip():
            raise RuntimeError(error)
        return data.decode().strip()

    def env(self) -> dict[str, str]:
        env = {"HOME": str(self.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
               "XDG_RUNTIME_DIR": str(self.home), "NO_AT_BRIDGE": "1"}
        if self.display:
            env["DISPLAY"] = self.display
        if self.bus:
            env["DBUS_SESSION_BUS_ADDRESS"] = self.bus
        return env

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, cwd=self.home, env=self.env(),
                                **self.identity.popen_args(), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, *argv: str, timeout: float = 20) -> str:
        """Run a short command on this display (as the desktop's user) and return its output."""
        return subprocess.run(list(argv), cwd=self.home, env=self.env(), capture_output=True,
                              text=True, timeout=timeout, check=True,
                              **self.identity.popen_args()).stdout

    def screenshot(self, path: Path) -> Path:
        shot = self.home / "screen.png"
        self.run("import", "-window", "root", str(shot))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, path)
        return path

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass(frozen=True)
class ArchivedMessage:
    jid: str
    kind: int
    message: str


class Gajim:
    """One Gajim with one account, started on ``desktop``."""

    ACCOUNT = "test"

    def __init__(self, desktop: Desktop, *, jid: str, password: str, host: str, port: int,
                 certificate: Path, open_chats: tuple[str, ...] = ()) -> None:
        self.desktop = desktop
        self.jid = jid
        self.config = desktop.home / ".config" / "gajim"
        self.data = desktop.home / ".local" / "share" / "gajim"
        self._write_profile(jid, password, host, port, certificate, open_chats)
        self.log_path = desktop.home / "gajim.log"
        self._log = open(self.log_path, "wb")
        self.proc = desktop.start(["gajim", "-v"], stdout=self._log, stderr=subprocess.STDOUT)

    def _write_profile(self, jid: str, password: str, host: str, port: int,
                       certificate: Path, open_chats: tuple[str, ...]) -> None:
        local, domain = jid.split("@", 1)
        self.config.mkdir(parents=True)
        (self.data / "cert_store").mkdir(parents=True)
        # Gajim pins a certificate the user accepted by storing it here (gajim.common.cert_store).
        shutil.copyfile(certificate, self.data / "cert_store" / "server.pem")
        account = {
            "name": local, "hostname": domain, "password": password, "savepass": True,
            "resource": "gajim", "active": True, "autoconnect": True,
            "use_custom_host": True, "custom_host": host, "custom_port": port,
            "custom_type": "START TLS", "last_status": "online", "account_label": "test",
        }
        app = {"use_keyring": False, "is_window_visible": True, "check_for_update": False,
               "show_main_window_on_startup": "always",
               "mainwin_width": SCREEN[0], "mainwin_height": SCREEN[1]}
        # Conversations the user had opened before, listed in the sidebar (as Gajim stores them).
        chats = [{"account": self.ACCOUNT, "jid": {"__type": "JID", "value": chat},
                  "type": "chat", "pinned": False, "position": -1} for chat in open_chats]
        workspace = {"00000000-0000-4000-8000-000000000001": {"chats": chats}}
        with sqlite3.connect(self.config / "settings.sqlite") as con:
            con.executescript("CREATE TABLE settings (name TEXT UNIQUE, settings TEXT);"
                              "CREATE TABLE account_settings (account TEXT UNIQUE, settings TEXT);")
            rows = {"app": app, "soundevents": {}, "status_presets": {}, "proxies": {},
                    "plugins": {}, "workspaces": workspace}
            con.executemany("INSERT INTO settings VALUES (?, ?)",
                            [(name, json.dumps(value)) for name, value in rows.items()])
            con.execute("INSERT INTO account_settings VALUES (?, ?)", (self.ACCOUNT, json.dumps(
                {"account": account, "contact": {}, "group_chat": {}})))
            con.execute(f"PRAGMA user_version = {SETTINGS_VERSION}")
        con.close()
        self.desktop.identity.own(self.desktop.home)

    # --- what Gajim recorded --------------------------------------------------------------

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def archive(self) -> list[ArchivedMessage]:
        """Every chat message Gajim stored (and showed), oldest first."""
        path = self.data / "logs.db"
        if not path.exists():
            return []
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
            try:
                rows = con.execute("SELECT jids.jid, logs.kind, logs.message FROM logs "
                                   "JOIN jids ON jids.jid_id = logs.jid_id "
                                   "ORDER BY logs.log_line_id").fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError:  # not created yet, or locked for a write
            return []
        return [ArchivedMessage(str(jid), int(kind), str(message or "")) for jid, kind, message
                in rows if kind in (CHAT_MSG_RECV, CHAT_MSG_SENT)]

    def received_messages(self) -> list[str]:
        """The ``<message>`` stanzas Gajim received, as its stanza log (``-v``) shows them."""
        blocks = self.log().split("::::: DATA RECEIVED ::::")[1:]
        return [block.split("\n\n")[1].strip() for block in blocks
                if "\n\n" in block and block.split("\n\n")[1].lstrip().startswith("<message")]

    def describe(self) -> str:
        """What Gajim showed, and the last messages it received (shown or not)."""
        lines = [f"  {'<-' if m.kind == CHAT_MSG_RECV else '->'} {m.jid}: {m.message[:200]!r}"
                 for m in self.archive()]
        stanzas = [f"  {stanza[:700]}" for stanza in self.received_messages()[-3:]]
        return ("Gajim's archive (what it showed) holds:\n" + ("\n".join(lines) or "  (nothing)")
                + "\nthe last <message> stanzas it received:\n"
                + ("\n".join(stanzas) or "  (none)") + f"\nGajim's windows: {self.windows()}")

    def wait_for_message(self, match: Callable[[ArchivedMessage], bool], timeout: float,
                         what: str) -> ArchivedMessage:
        def probe() -> ArchivedMessage | None:
            return next((m for m in self.archive() if match(m)), None)

        return poll(probe, timeout, lambda: f"Gajim never showed {what}.\n{self.describe()}")

    def wait_connected(self, timeout: float = 30) -> None:
        """Until Gajim's stream is bound (its stanza log says so)."""
        def bound() -> bool | None:
            if self.proc.poll() is not None:
                tail = self.log()[-3000:]
                raise AssertionError(f"Gajim exited ({self.proc.returncode}):\n{tail}")
            return True if "Successfully bound" in self.log() else None

        poll(bound, timeout, lambda: f"Gajim did not log in.\n{self.describe()}")

    # --- driving the window ---------------------------------------------------------------

    def windows(self) -> list[tuple[str, str]]:
        """(window id, title) of Gajim's visible windows."""
        try:
            ids = self.desktop.run("xdotool", "search", "--onlyvisible", "--pid",
                                   str(self.proc.pid), "--name", ".").split()
        except subprocess.CalledProcessError:
            return []
        found = []
        for wid in ids:
            try:
                found.append((wid, self.desktop.run("xdotool", "getwindowname", wid).strip()))
            except subprocess.CalledProcessError:
                continue
        return found

    def wait_window(self, title: str, timeout: float = 20) -> str:
        return poll(lambda: next((w for w, t in self.windows() if title in t), None), timeout,
                    lambda: f"no Gajim window titled {title!r}.\n{self.describe()}")

    def open_chat(self, jid: str, message: str) -> None:
        """Open a chat with ``jid`` with ``message`` typed, as an ``xmpp:`` link does."""
        self.desktop.run("gajim", f"xmpp:{jid}?message;body={quote(message, safe='')}")

    def say(self, jid: str, message: str, timeout: float = 20) -> None:
        """Send ``message`` in the open conversation with ``jid``: fill its input, press Enter.

        The conversation must be in the sidebar already (``open_chats``): then the ``xmpp:``
        link selects it and types the text into its message input, with no dialog in between.
        """
        self.open_chat(jid, message)
        self.keys(self.wait_window("Gajim"), "Return")
        self.wait_for_message(lambda m: m.kind == CHAT_MSG_SENT and m.jid == jid
                              and m.message == message, timeout, f"{message!r} sent to {jid}")

    def show_chat(self, jid: str) -> None:
        """Bring the conversation with ``jid`` (already in the sidebar) to the front."""
        self.desktop.run("gajim", f"xmpp:{jid}")

    def keys(self, window: str, *keys: str) -> None:
        """Press keys in ``window``: without a window manager, focus it ourselves first."""
        self.desktop.run("xdotool", "windowfocus", "--sync", window)
        self.desktop.run("xdotool", "key", "--clearmodifiers", *keys)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextmanager
def gajim_session(artifacts: Path, **kwargs: Any) -> Iterator[Gajim]:
    """A desktop running Gajim with ``kwargs``'s account; torn down afterwards, leaving its
    last screen, log and archive in ``artifacts``."""
    desktop = Desktop(desktop_identity())
    gajim: Gajim | None = None
    try:
        gajim = Gajim(desktop, **kwargs)
        yield gajim
    finally:
        artifacts.mkdir(parents=True, exist_ok=True)
        try:
            desktop.screenshot(artifacts / "last-screen.png")
        except (OSError, subprocess.SubprocessError):
            pass
        if gajim is not None:
            gajim.close()
            for source in (gajim.log_path, gajim.data / "logs.db"):
                if source.exists():
                    shutil.copyfile(source, artifacts / source.name)
        desktop.close()
