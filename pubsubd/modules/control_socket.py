"""The local control channel of ``pubsubd admin``: a UNIX socket, one JSON object per line.

Only the account running the server (and root) can connect: the socket file is created with
mode 0600, so file permissions are the authentication. A request is
``{"op": "users", "args": {...}}``; the answer is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "one line"}``. Operations live in a :class:`ControlOps` registry (name →
``async fn(args) -> JSON value``), so any module adds its own (the feed service adds feed
operations) without touching this file. An operation raises :class:`ControlError` for a refusal
the operator should read.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import trio

from pubsubd.core.control_ops import ControlOp, ControlOps
from pubsubd.core.module import Module

__all__ = ["ControlError", "ControlOp", "ControlSocketModule", "MAX_LINE"]

MAX_LINE = 1 << 20  # bytes of one request line
REQUEST_TIMEOUT = 60.0  # seconds a client may take to send a line, and an operation to run


class ControlError(Exception):
    """A refusal or failure of an operation, shown to the operator as is."""


class ControlSocketModule(Module):
    name = "control_socket"

    def __init__(self, *, enabled: bool, socket_path: Path, ops: ControlOps) -> None:
        super().__init__()
        self.enabled = enabled
        self.path = socket_path
        self.ops = ops

    def setup(self) -> None:
        self.ops.register("ops", self._ops)

    async def _ops(self, args: dict[str, Any]) -> list[dict[str, str]]:
        """The operations this server offers, with their first docstring line."""
        return [{"op": name, "help": ((fn.__doc__ or "").strip().splitlines() or [""])[0]}
                for name, fn in sorted(self.ops.items())]

    async def run(self) -> None:
        if not self.enabled:
            return
        sock = await self._bind()
        if sock is None:
            return
        listener = trio.SocketListener(sock)
        try:
            async with trio.open_nursery() as nursery:
                async with listener:
                    while True:
                        stream = await listener.accept()
                        nursery.start_soon(self._serve, stream)
        finally:
            self._unlink()  # synchronous: runs even while cancelled

    async def _bind(self) -> trio.socket.SocketType | None:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if await _answers(path):
                self.log.error("another server is using the control socket %s", path)
                return None
            path.unlink()  # left over from a crash
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # created 0600 from the start: no window for others
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(16)
        self.log.info("control socket at %s", path)
        return sock

    def _unlink(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass

    async def stop(self) -> None:
        self._unlink()

    async def _serve(self, stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            async with stream:
                while True:
                    with trio.move_on_after(REQUEST_TIMEOUT) as waiting:
                        while b"\n" not in buffer:
                            data = await stream.receive_some(65536)
                            if not data:
                                return
                            buffer += data
                            if len(buffer) > MAX_LINE:
                                await stream.send_all(_encode(False, "request too long"))
                                return
                    if waiting.cancelled_caught:
                        return
                    line, _, buffer = buffer.partition(b"\n")
                    await stream.send_all(await self._answer(line))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _answer(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return _encode(False, "the request is not JSON")
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return _encode(False, 'expected {"op": NAME, "args": {...}}')
        args = request.get("args") or {}
        if not isinstance(args, dict):
            return _encode(False, "args must be an object")
        op = self.ops.get(request["op"])
        if op is None:
            known = ", ".join(sorted(self.ops))
            return _encode(False, f"unknown operation {request['op']!r} (known: {known})")
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                result = await op(args)
        except ControlError as exc:
            return _encode(False, str(exc))
        except trio.TooSlowError:
            return _encode(False, "the operation timed out")
        except Exception:
            self.log.exception("control operation %s failed", request["op"])
            return _encode(False, "internal error (see the server log)")
        self.log.info("control operation %s done", request["op"])
        return _encode(True, result)


def _encode(ok: bool, value: Any) -> bytes:
    body = {"ok": True, "result": value} if ok else {"ok": False, "error": str(value)}
    return json.dumps(body, default=str).encode() + b"\n"


async def _answers(path: Path) -> bool:
    """Does a live server listen on ``path``?"""
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.move_on_after(1):
            await probe.connect(str(path))
            return True
        return False
    except OSError:
        return False
    finally:
        probe.close()
