"""``pubsubd admin OP [ARGS...]``: operations on the running server through its control socket.

The client is deliberately generic: any operation the server registers (``pubsubd admin ops``
lists them) can be called with ``key=value`` arguments; :data:`POSITIONAL` only lets the common
ones take plain positional arguments (``pubsubd admin kick bob@example.org``). Results print as
tables by default and as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

from pubsubd.cli_defaults import DEFAULT_CONFIG
from pubsubd.config import load

# Operation → names of its positional arguments; the last one takes the rest of the words.
POSITIONAL: dict[str, tuple[str, ...]] = {
    "announce": ("text",),
    "kick": ("jid",),
    "disable": ("jid",),
    "enable": ("jid",),
    "delete": ("jid",),
    "motd": ("text",),
    "shutdown": ("delay",),
    "restart": ("delay",),
    "feeds.add": ("url",),
    "feeds.remove": ("url",),
    "feeds.pause": ("url",),
    "feeds.resume": ("url",),
    "feeds.refresh": ("url",),
}
TIMEOUT = 70.0  # seconds; the server gives an operation 60


class NotRunning(Exception):
    pass


def add_parser(admin: argparse.ArgumentParser) -> None:
    """Fill the ``admin`` subcommand's parser (created by the main CLI)."""
    admin.description = ("Run an operation on the running server. Common ones: users, online, "
                         "stats, announce TEXT, kick JID, disable JID, enable JID, delete JID, "
                         "motd [TEXT] [delete=true], shutdown [DELAY], restart [DELAY]; "
                         "'ops' lists them all.")
    admin.add_argument("op", help="the operation (try 'ops')")
    admin.add_argument("params", nargs="*", help="arguments: positional, or key=value")
    admin.add_argument("--json", action="store_true", help="machine-readable output")
    admin.set_defaults(func=cmd_admin)


def parse_params(op: str, params: list[str]) -> dict[str, Any]:
    """``key=value`` words become arguments; other words fill :data:`POSITIONAL` in order."""
    args: dict[str, Any] = {}
    plain: list[str] = []
    for word in params:
        key, eq, value = word.partition("=")
        if eq and key.isidentifier():
            args[key] = _scalar(value)
        else:
            plain.append(word)
    names = POSITIONAL.get(op, ())
    if plain and not names:
        raise ValueError(f"{op} takes key=value arguments only")
    for i, name in enumerate(names):
        if i >= len(plain):
            break
        args[name] = " ".join(plain[i:]) if i == len(names) - 1 else plain[i]
    return args


def _scalar(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    return value


def call(socket_path: Path, op: str, args: dict[str, Any]) -> Any:
    """Send one request; return its result or raise RuntimeError with the server's message."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        try:
            sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"the server is not running (no control socket at {socket_path})")\
                from None
        sock.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection without answering")
            data += chunk
    finally:
        sock.close()
    answer = json.loads(data)
    if not answer.get("ok"):
        raise RuntimeError(answer.get("error") or "the operation failed")
    return answer.get("result")


def cmd_admin(args: argparse.Namespace) -> int:
    config = load(getattr(args, "config", DEFAULT_CONFIG))
    try:
        request = parse_params(args.op, args.params)
        result = call(Path(config.control.socket), args.op, request)
    except NotRunning as exc:
        print(f"pubsubd: {exc}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"pubsubd: {args.op}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def render(result: Any) -> str:
    """A table for a list of records, aligned ``key  value`` lines for one record."""
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        columns = list(dict.fromkeys(k for row in result for k in row))
        rows = [[_cell(row.get(c, "")) for c in columns] for row in result]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(line.rstrip() for line in lines)
    if isinstance(result, list):
        return "\n".join(_cell(v) for v in result) if result else "(none)"
    if isinstance(result, dict):
        width = max((len(k) for k in result), default=0)
        return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in result.items())
    return _cell(result)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
