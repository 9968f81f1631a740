"""Profanity 0.13 (Debian) in tmux: log in over STARTTLS, chat, and read back its chat log.

Profanity records every message it shows in an SQLite database
(``~/.local/share/profanity/database/<user>_at_<domain>/chatlog.db``, table ``ChatLogs``); the
tests wait on that record and on the screen, never on time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clients.tmux import Terminal, compact

LOGIN_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Logged:
    """One message in Profanity's chat log."""

    sender: str
    recipient: str
    text: str


class Profanity:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.jid = ""
        home.mkdir(parents=True, exist_ok=True)
        self.term = Terminal("profanity", ["profanity"],
                             {"HOME": str(home), "TERM": "screen-256color", "LANG": "C.UTF-8"})
        self.term.wait_for("Profanity", what="Profanity's start screen")

    def login(self, jid: str, password: str, port: int) -> None:
        """Connect with STARTTLS required, and trust the server's self-signed certificate."""
        self.jid = jid
        self.term.type(f"/connect {jid} server 127.0.0.1 port {port} tls force")
        self.term.wait_for("password", what="the password prompt")
        self.term.type(password)
        # Profanity shows the certificate and asks; '/tls always' is what a user types for a
        # self-signed certificate they trust.
        self.term.wait_for("/tls always", LOGIN_TIMEOUT, what="the certificate question")
        self.term.type("/tls always")
        self.term.wait_for("logged in successfully", LOGIN_TIMEOUT, what="a successful login")

    def say(self, to: str, text: str) -> None:
        """Open (or go to) the chat with ``to`` and send ``text``."""
        self.term.type(f"/msg {to} {text}")

    def show(self, jid: str, name: str | None = None) -> None:
        """Bring the chat with ``jid`` to the screen, as a user picking it would.

        The window's title bar names the contact: its roster ``name`` if it has one."""
        self.term.type(f"/msg {jid}")
        self.term.wait_for(lambda s: _title_names(s, name or jid),
                           what=f"the chat window of {jid} (titled {name or jid!r})")

    def chat_log(self) -> list[Logged]:
        user, domain = self.jid.split("@")
        db = (self.home / ".local/share/profanity/database" / f"{user}_at_{domain}"
              / "chatlog.db")
        if not db.exists():
            return []
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                rows = conn.execute("SELECT from_jid, to_jid, message FROM ChatLogs "
                                    "ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # being written, or not created yet
            return []
        return [Logged(str(f), str(t), str(m or "")) for f, t, m in rows]

    def wait_for_log(self, found: Callable[[list[Logged]], bool], timeout: float,
                     what: str) -> list[Logged]:
        """Poll the chat log until ``found`` holds; fail with the log and the screen."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.chat_log()
            if found(log):
                return log
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{what}: not in Profanity's chat log within {timeout:.0f} s.\n"
                    f"The log holds:\n{_describe(log)}\n"
                    f"The screen was:\n{compact(self.term.screen())}")
            time.sleep(0.2)

    def close(self) -> None:
        self.term.close()


def _title_names(screen: str, name: str) -> bool:
    """Profanity's chat window starts with a title bar naming the contact."""
    first = screen.split("\n", 1)[0]
    return first.startswith(f" {name} ")


def _describe(log: list[Logged]) -> str:
    if not log:
        return "  (nothing)"
    return "\n".join(f"  {m.sender} -> {m.recipient}: {m.text[:120]!r}" for m in log)
