"""The ports a running server is bound to, written for whoever started it.

Listeners configured with port 0 bind an ephemeral port the operating system picks, so nothing
can race for it; the file tells a supervisor (or the test harness) which ports those are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write(path: Path, ports: dict[str, int]) -> None:
    """Write ``{"c2s": 5222, "c2s:0": 5222, ...}`` atomically: a reader sees all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(ports, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read(path: Path) -> dict[str, int]:
    return {str(k): int(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
