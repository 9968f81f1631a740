"""A terminal client in a private tmux server: type at it, read its screen, wait for text.

Each :class:`Terminal` has its own tmux server (a uniquely named socket), so tests never see
each other's sessions nor a developer's own tmux. Waiting polls ``capture-pane`` against a
deadline: the screen is what a person reads, and with the client's own record the only thing
these tests synchronise on.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from clients.screenshot import keep

WIDTH, HEIGHT = 120, 34


class ScreenTimeout(AssertionError):
    """What was awaited never showed; the message holds the screen as it was."""


class Terminal:
    """One client program running in a detached tmux session of ``WIDTH`` x ``HEIGHT``."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str],
                 *, switch_user: Sequence[str] = (), cwd: Path | None = None) -> None:
        """Run ``argv`` with ``env`` added, after ``switch_user`` (e.g. ``runuser -u x --``)."""
        self.name = name
        self.socket = f"pubsubd-{name}-{uuid.uuid4().hex[:12]}"
        # curses believes COLUMNS and LINES over the terminal itself: test runners may set them.
        env = {"COLUMNS": str(WIDTH), "LINES": str(HEIGHT), **env}
        words = [*switch_user, "env", *(f"{k}={v}" for k, v in env.items()), *argv]
        command = " ".join(shlex.quote(w) for w in words)
        # A shell keeps the pane open after the client exits, so its last words stay readable.
        shell = f"{command}; echo; echo '[client exited with status '$?']'; sleep 3600"
        self._tmux("new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT),
                   *(["-c", str(cwd)] if cwd else []), shell)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout

    def type(self, text: str, *, enter: bool = True) -> None:
        """Type ``text`` literally (then Enter), as a person at the keyboard."""
        if text:
            self._tmux("send-keys", "-t", self.name, "-l", text)
        if enter:
            self.keys("Enter")

    def keys(self, *names: str) -> None:
        """Press named keys (``Enter``, ``C-n``, ``M-2``...)."""
        self._tmux("send-keys", "-t", self.name, *names)

    def screen(self, *, colours: bool = False) -> str:
        """The visible screen (with ANSI colour escapes if ``colours``)."""
        return self._tmux("capture-pane", "-t", self.name, "-p", *(["-e"] if colours else []))

    def wait_for(self, expected: str | Callable[[str], bool], timeout: float = 20.0,
                 *, what: str | None = None) -> str:
        """Poll the screen until it contains ``expected`` (or satisfies it); return the screen."""
        check = (lambda s: expected in s) if isinstance(expected, str) else expected
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() >= deadline:
                label = what or (repr(expected) if isinstance(expected, str) else "condition")
                raise ScreenTimeout(f"{label} never showed within {timeout:.0f} s; "
                                    f"the screen was:\n{compact(screen)}")
            time.sleep(0.2)

    def save(self, directory: Path, stem: str, *, publish: bool = False) -> None:
        """Keep the screen for a person to look at later: ``stem.txt``, ``stem.ansi`` (with
        colours) and ``stem.png``; with ``publish``, the picture also goes to
        ``$PUBSUBD_SCREENSHOT_DIR`` when set (that is how the pictures in ``docs/`` are made)."""
        try:
            plain, coloured = self.screen(), self.screen(colours=True)
        except subprocess.SubprocessError:  # the terminal is gone: nothing left to keep
            return
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{stem}.txt").write_text(plain)
        (directory / f"{stem}.ansi").write_text(coloured)
        keep(coloured, directory, f"{stem}.png", WIDTH, publish=publish)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)


def compact(screen: str) -> str:
    """The screen for an error message: runs of blank lines shown as one, trailing blanks cut."""
    lines = [line.rstrip() for line in screen.rstrip().split("\n")]
    kept = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    return "\n".join(kept)
