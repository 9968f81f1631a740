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
EVENT = re.compile(r"DEBUG:xmlstream:Event triggered: (\w+)")
# A conversation tab's history loaded (log_loader.LogLoader.tab_open), per bare JID.
HISTORY_LOADED = re.compile(r"DEBUG:log_loader:Fetched \d+ messages for (\S+)$", re.MULTILINE)
# "MR 20261204T19:21:38Z 002 <nick> \u00a0first line", then (here) two lines starting with " ".
LOG_LINE = re.compile(r"^M[RI] \d{8}T\d{2}:\d{2}:\d{2}Z (\d{3}) (?:<([^>]*)> \xa0?)?(.*)$")


def config(jid: str, password: str, port: int, ca_cert: Path) -> str:
    """The settings a person would write: the self-signed certificate is trusted explicitly
    (``ca_cert_path``), since ``ignore_certificate`` alone does not get Poezio past it."""
    return (f"[Poezio]\njid = {jid}\npassword = {password}\ncustom_host = 127.0.0.1\n"
            f"custom_port = {port}\nca_cert_path = {ca_cert}\nforce_encryption = true\n")


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
        self.debug_log = home / "poezio-debug.log"
        self.term = Terminal("poezio", ["poezio", "--debug", str(self.debug_log)],
                             {"HOME": str(home), "TERM": "screen-256color", "LANG": "C.UTF-8",
                              "NCURSES_NO_UTF8_ACS": "1"},
                             switch_user=account.argv_prefix)

    def wait_logged_in(self) -> str:
        """Wait until Poezio's session started (its debug log says so); return the screen."""
        deadline = time.monotonic() + LOGIN_TIMEOUT
        while "session_start" not in self.events():
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"Poezio did not log in within {LOGIN_TIMEOUT:.0f} s; its connection "
                    f"events: {self.events()}\nThe screen was:\n{compact(self.term.screen())}")
            time.sleep(0.2)
        return self.term.screen()

    def events(self) -> list[str]:
        """The connection events (slixmpp's: connected, auth_success, disconnected...) in
        Poezio's debug log, in order."""
        return self._debug_matches(EVENT)

    def wait_history_loaded(self, jid: str) -> None:
        """Wait until the conversation tab with ``jid`` has loaded its history (from the
        server's archive into its log, then from its log onto the screen), which it does once,
        when the tab opens."""
        deadline = time.monotonic() + LOGIN_TIMEOUT
        while jid not in self._debug_matches(HISTORY_LOADED):
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"Poezio did not load the history of {jid} within {LOGIN_TIMEOUT:.0f} s."
                    f"\nThe screen was:\n{compact(self.term.screen())}")
            time.sleep(0.2)

    def _debug_matches(self, pattern: re.Pattern[str]) -> list[str]:
        """What ``pattern`` finds in Poezio's debug log, in order."""
        try:
            text = self.debug_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return pattern.findall(text)

    def command(self, text: str) -> None:
        """Type a /command and Enter. Poezio takes a burst of keys as a paste, in which Enter
        can be lost, and keys typed right after '/' in the roster tab can be lost too: so '/'
        goes alone first, then the text, and Enter once the input line shows it all."""
        self.term.type("/", enter=False)
        self.term.wait_for(lambda s: _input_line(s) == "/", what="'/' in the input line")
        self.term.type(text, enter=False)
        tail = f"/{text}"[-40:]
        self.term.wait_for(lambda s: _input_line(s).endswith(tail),
                           what=f"{tail!r} in the input line")
        self.term.keys("Enter")

    def say(self, to: str, text: str) -> None:
        """Open (or go to) the conversation with ``to`` and send ``text``."""
        self.command(f"message {to} {text}")

    def show(self, jid: str) -> None:
        """Bring the conversation with ``jid`` to the screen, as a user picking it would."""
        self.command(f"message {jid}")
        self.term.wait_for(lambda s: f"[{jid}]" in s, what=f"the conversation with {jid}")

    def wait_shown(self, text: str, what: str) -> str:
        """Wait until the open tab shows ``text``, perhaps wrapped over lines; the screen."""
        wanted = "".join(text.split())
        return self.term.wait_for(lambda s: wanted in tab_text(s), what=what)

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
    """The bottom line, right of the vertical tab list."""
    return screen.removesuffix("\n").split("\n")[-1].rsplit("│", 1)[-1].strip()


def _describe(logs: dict[str, list[tuple[str, str]]]) -> str:
    if not logs:
        return "  (nothing)"
    return "\n".join(f"  {jid}: <{nick}> {text[:120]!r}"
                     for jid, messages in sorted(logs.items()) for nick, text in messages)


def tab_text(screen: str) -> str:
    """The open tab's text (right of the vertical tab list) without whitespace, so that a
    message wrapped over several lines is found whole."""
    column = [line.split("│", 1)[-1] for line in screen.split("\n")]
    return "".join("".join(column).split())


def info_text(screen: str) -> str:
    """The roster tab's information column (right of the last box line) without whitespace,
    so that a message wrapped over several lines is found whole."""
    column = [line.rsplit("│", 1)[-1] for line in screen.split("\n")]
    return "".join("".join(column).split())
