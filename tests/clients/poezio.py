"""Poezio 0.14 (Debian) in tmux: configured account, chat, and read back its conversation logs.

Poezio refuses to run as root, so it runs as an ordinary user (see :mod:`clients.account`). It
writes one log per conversation (``~/.local/share/poezio/logs/<bare JID>``); the tests wait on
those logs and on the screen, never on time.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from clients.account import ClientAccount
from clients.tmux import Terminal, compact

LOGIN_TIMEOUT = 30.0
# "MR 20261204T19:21:38Z 002 <nick>  first line", then (here) two more lines starting with " ".
LOG_LINE = re.compile(r"^M[RI] \d{8}T\d{2}:\d{2}:\d{2}Z (\d{3}) (?:<([^>]*)>  )?(.*)$")


def config(jid: str, password: str, port: int, ca_cert: Path) -> str:
    """The settings a person would write: the self-signed certificate is trusted explicitly
    (``ca_cert_path``), since ``ignore_certificate`` alone does not get Poezio past it."""
    return (f"[Poezio]\njid = {jid}\npassword = {password}\ncustom_host = 127.0.0.1\n"
            f"custom_port = {port}\nca_cert_path = {ca_cert}\nforce_encryption = true\n"
            "use_bookmarks_method = local\n")


class Poezio:
    def __init__(self, account: ClientAccount, jid: str, password: str, port: int,
                 certificate: Path) -> None:
        self.account = account
        home = account.home
        settings = home / ".config" / "poezio"
        settings.mkdir(parents=True, exist_ok=True)
        ca_cert = home / "server.crt"
        shutil.copy(certificate, ca_cert)
        (settings / "poezio.cfg").write_text(config(jid, password, port, ca_cert))
        account.give(home)
        self.logs_dir = home / ".local" / "share" / "poezio" / "logs"
        self.term = Terminal("poezio", ["poezio"],
                             {"HOME": str(home), "TERM": "screen-256color", "LANG": "C.UTF-8",
                              "NCURSES_NO_UTF8_ACS": "1"},
                             switch_user=account.argv_prefix)

    def wait_logged_in(self) -> str:
        """The screen once Poezio says which full JID it was bound to."""
        return self.term.wait_for("Your JID is", LOGIN_TIMEOUT, what="a successful login")

    def command(self, text: str) -> None:
        """Type a /command. Keys typed right after '/' can be lost in the roster tab, so '/' goes
        alone first, and the rest once the input line shows it."""
        self.term.type("/", enter=False)
        self.term.wait_for(lambda s: _input_line(s) == "/", what="'/' in the input line")
        self.term.type(text)

    def say(self, to: str, text: str) -> None:
        """Open (or go to) the conversation with ``to`` and send ``text``."""
        self.command(f"message {to} {text}")

    def show(self, jid: str) -> None:
        """Bring the conversation with ``jid`` to the screen, as a user picking it would."""
        self.command(f"message {jid}")
        self.term.wait_for(lambda s: f"[{jid}]" in s, what=f"the conversation with {jid}")

    def conversations(self) -> dict[str, list[tuple[str, str]]]:
        """(nick, text) of each message Poezio logged, per bare JID."""
        found: dict[str, list[tuple[str, str]]] = {}
        if not self.logs_dir.is_dir():
            return found
        for path in self.logs_dir.iterdir():
            if path.is_file() and not path.name.endswith(".log"):  # roster.log, errors.log
                found[path.name] = parse_log(path.read_text(errors="replace"))
        return found

    def wait_for_log(self, found: Callable[[dict[str, list[tuple[str, str]]]], bool],
                     timeout: float, what: str) -> dict[str, list[tuple[str, str]]]:
        """Poll the conversation logs until ``found`` holds; fail with the logs and screen."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.conversations()
            if found(logs):
                return logs
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{what}: not in Poezio's conversation logs within {timeout:.0f} s.\n"
                    f"The logs hold:\n{_describe(logs)}\n"
                    f"The screen was:\n{compact(self.term.screen())}")
            time.sleep(0.2)

    def close(self) -> None:
        self.term.close()


def parse_log(text: str) -> list[tuple[str, str]]:
    """(nick, text) per message of one Poezio log file (multi-line messages joined)."""
    messages: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = LOG_LINE.match(lines[i])
        i += 1
        if not match:
            continue
        more = int(match.group(1))
        body = [match.group(3), *(line[1:] for line in lines[i:i + more])]
        i += more
        messages.append((match.group(2) or "", "\n".join(body)))
    return messages


def _input_line(screen: str) -> str:
    lines = screen.rstrip("\n").split("\n")
    return lines[-1].strip() if lines else ""


def _describe(logs: dict[str, list[tuple[str, str]]]) -> str:
    if not logs:
        return "  (nothing)"
    return "\n".join(f"  {jid}: <{nick}> {text[:120]!r}"
                     for jid, messages in sorted(logs.items()) for nick, text in messages)
