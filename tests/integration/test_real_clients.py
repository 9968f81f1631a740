"""A real terminal Jabber client (Profanity, from Debian) logs in and talks to the feed service.

Profanity runs in a tmux session; the test types at its prompt and reads its screen, as a person
would. Skipped where Profanity or tmux is not installed (`make test` installs both).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from harness import ServerProcess
from peers import needs_peers

required_peers = needs_peers("profanity", "tmux")


class Terminal:
    def __init__(self, name: str, home: Path) -> None:
        self.name = name
        self.socket = str(home / "tmux.sock")
        home.mkdir(parents=True, exist_ok=True)
        self._tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "50",
                   f"env HOME={home} TERM=xterm profanity")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", text)
        self._tmux("send-keys", "-t", self.name, "Enter")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-t", self.name, "-p", "-S", "-200")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       timeout=10)


def test_profanity_logs_in_and_chats_with_the_feed_service(server: ServerProcess,
                                                           tmp_path: Path) -> None:
    server.add_user("carol", "secret12")
    term = Terminal("prof", tmp_path / "home")
    try:
        term.wait_for("Profanity")
        term.type(f"/connect carol@localhost server 127.0.0.1 port {server.c2s_port} tls force")
        term.wait_for("password")
        term.type("secret12")
        # The certificate is self-signed: accept it once, as the README tells users to.
        term.wait_for("/tls allow")
        term.type("/tls allow")
        term.wait_for("logged in successfully")
        term.type("/msg pubsub.localhost help")
        term.wait_for("I deliver web feeds")
        term.type("/msg pubsub.localhost list")
        term.wait_for("You follow no feeds yet")
    finally:
        term.close()
