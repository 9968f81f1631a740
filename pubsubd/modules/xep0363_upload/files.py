"""The HTTP side of the upload service: PUT into a granted slot, GET/HEAD the stored file.

Files are stored under their slot id only (never under a client-chosen name), written to a
temporary file and renamed, so a reader sees a whole file or none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import trio

from pubsubd.net.http import Request, Response
from pubsubd.storage.interfaces import UploadRecord, UploadStore

from . import slots

# CORS: web clients upload from their own origin (XEP-0363 §6, Implementation Notes).
_CORS = [("Access-Control-Allow-Origin", "*"),
         ("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS"),
         ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
         ("Access-Control-Max-Age", "86400")]


def _plain(status: int, text: str) -> Response:
    return Response(status, f"{text}\n".encode(), headers=list(_CORS))


class FileService:
    def __init__(self, *, store: UploadStore, directory: Path, secret: bytes,
                 slot_timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.directory = directory
        self.secret = secret
        self.slot_timeout = slot_timeout
        self.clock = clock

    def path_of(self, slot_id: str) -> Path:
        return self.directory / slot_id

    async def respond(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(204, headers=list(_CORS))
        if request.method not in ("GET", "HEAD", "PUT"):
            return Response(405, b"method not allowed\n",
                            headers=[("Allow", "GET, HEAD, PUT, OPTIONS"), *_CORS])
        parts = request.path.split("/")
        if len(parts) != 4 or parts[:2] != ["", "upload"] or not parts[2]:
            return _plain(404, "not found")
        record = await self.store.get(parts[2])
        if record is None or unquote(parts[3]) != record.filename:
            return _plain(404, "not found")
        if request.method == "PUT":
            return await self._put(record, request)
        return await self._get(record)

    async def _put(self, record: UploadRecord, request: Request) -> Response:
        # XEP-0363 §5: only with the headers of the slot, within its lifetime, exactly once.
        if not slots.authorized(self.secret, record.slot_id, record.size, record.content_type,
                                request.headers.get("authorization")):
            return _plain(403, "this upload needs the slot's Authorization header")
        if record.uploaded is not None:
            return _plain(409, "this slot was used already")
        if self.clock() > record.granted + self.slot_timeout:
            return _plain(403, "the slot has expired")
        if len(request.body) != record.size:
            return _plain(400, f"the slot is for exactly {record.size} bytes")
        given = request.headers.get("content-type")
        if given is not None and slots.media_type(given) != record.content_type:
            return _plain(400, f"the slot is for content of type {record.content_type}")
        path = self.path_of(record.slot_id)
        await trio.to_thread.run_sync(_write_atomically, path, request.body)
        if not await self.store.mark_uploaded(record.slot_id, self.clock()):
            # Used concurrently, or removed by expiry meanwhile: the first upload stands.
            return _plain(409, "this slot was used already")
        return Response(201, headers=list(_CORS))

    async def _get(self, record: UploadRecord) -> Response:
        if record.uploaded is None:
            return _plain(404, "not found")
        try:
            data = await trio.to_thread.run_sync(self.path_of(record.slot_id).read_bytes)
        except FileNotFoundError:
            return _plain(404, "not found")
        content_type, headers = slots.served_headers(record.content_type, record.filename)
        return Response(200, data, content_type, [*headers, *_CORS])

    async def remove(self, record: UploadRecord) -> None:
        await trio.to_thread.run_sync(_unlink, self.path_of(record.slot_id))
        await self.store.delete(record.slot_id)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".part").unlink(missing_ok=True)
