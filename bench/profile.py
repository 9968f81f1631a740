"""Sampling profiles of pubsubd while a scenario runs (py-spy), and their summaries.

The bench attaches ``py-spy record --gil`` to the server for the length of each scenario, so
the profile holds only samples that ran Python code (the server's own CPU), then condenses the
folded stacks into the functions with the most self and total samples. The raw folded stacks
are kept beside the summary so the next person can draw a flame graph from them.
"""

from __future__ import annotations

import gzip
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Recording:
    """One py-spy process attached to ``pid`` until :meth:`stop`.

    A scenario may narrow the profile to its measured window: :meth:`restart` at the start of
    the window drops the set-up's samples (logins, subscriptions), :meth:`stop` at its end.
    """

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self.windowed = False  # the scenario marked its measured window
        self.proc: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        exe = py_spy()
        if exe is None:
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "record", "--gil", "--nonblocking", "-r", str(self.rate), "-f", "raw",
             "-o", str(self.output), "-p", str(self.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self) -> None:
        """Forget what was recorded so far and record from now on."""
        self.stop()
        self.output.unlink(missing_ok=True)
        self.windowed = True
        self._start()

    def stop(self) -> Path | None:
        if self.proc is None:
            return self.output if self.output.exists() else None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        return self.output if self.output.exists() else None


def window_starts(recording: Recording | None) -> None:
    """A scenario's measured window begins: the profile keeps only what follows."""
    if recording is not None:
        recording.restart()


def window_ends(recording: Recording | None) -> None:
    if recording is not None:
        recording.stop()


def _frame_name(frame: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)"; keep function and file.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/pubsubd/", "/site-packages/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/pubsubd/":
                path = "pubsubd/" + path
            break
    return f"{name} ({path})" if path else name


def summarize(folded: Path, top: int = 15, measured_only: bool = False) -> list[str]:
    """The ``top`` functions by self samples and by total (inclusive) samples, as lines;
    ``measured_only`` says the samples cover the measured window alone, without set-up."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if not samples:
        return ["(no samples)"]
    scope = "measured window only" if measured_only else "set-up included"
    lines = [f"{samples} samples holding the GIL ({scope})", "",
             "| self % | total % | function |", "|---:|---:|---|"]
    for name, count in own.most_common(top):
        lines.append(f"| {100 * count / samples:.1f} | {100 * total[name] / samples:.1f} "
                     f"| `{name}` |")
    lines += ["", "Most inclusive (total %) functions of pubsubd:", ""]
    ours = [(n, c) for n, c in total.most_common() if "pubsubd/" in n][:top]
    lines += [f"- {100 * c / samples:.1f} % `{n}`" for n, c in ours]
    return lines


def compress(folded: Path) -> Path:
    """Gzip the folded stacks (``flamegraph.pl`` and speedscope read them once unzipped)."""
    target = folded.with_suffix(folded.suffix + ".gz")
    target.write_bytes(gzip.compress(folded.read_bytes(), mtime=0))
    folded.unlink()
    return target
