"""Hearing other instances' writes: ``LISTEN pubsubd_invalidate`` on a connection of its own.

Several pubsubd instances may share one database (docs/scaling.md). A store whose write makes
another instance's cache stale sends ``NOTIFY pubsubd_invalidate, '<origin> <kind>:<key>'`` in
the same transaction as the write (:meth:`~.database.PgDatabase.notify`), so PostgreSQL
delivers it only if, and once, the write commits. This instance listens on a dedicated
connection, read by a worker thread (psycopg's async API runs on asyncio, not trio) that hands
each payload to the trio side, where the handlers subscribed to the kind drop or reload the key.
Notifications an instance sent itself are skipped: its stores already updated their caches.

The connection LISTENs as soon as the database opens, before any store loads its cache, so
nothing committed after a load goes unheard. A lost connection (PostgreSQL restarted, network
cut) means notifications may have been missed: caches stop serving (``live`` false) until the
connection is back and LISTENs again; then every handler hears "anything may have changed" (key
None), so there is no gap.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import psycopg
import trio

from pubsubd.storage.interfaces import InvalidationHandler

log = logging.getLogger("pubsubd.storage.postgres.invalidation")

CHANNEL = "pubsubd_invalidate"
MAX_PAYLOAD = 7900  # PostgreSQL refuses payloads of 8000 bytes or more
# How often the listening thread looks up from an idle connection (to notice close()).
POLL_SECONDS = 1.0
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # reconnection delays, the last one repeated


def payload(origin: str, kind: str, key: str) -> str:
    """The NOTIFY payload; a key too long to send stands for every key of its kind."""
    text = f"{origin} {kind}:{key}"
    return text if len(text.encode()) <= MAX_PAYLOAD else f"{origin} {kind}:"


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str | None  # None: the connection was lost (up=False) or is back (up=True)
    key: str | None = None
    up: bool = True


class PgInvalidation:
    """:class:`~pubsubd.storage.interfaces.Invalidation` on PostgreSQL LISTEN/NOTIFY."""

    def __init__(self, url: str, origin: str) -> None:
        self.url = url
        self.origin = origin
        self._handlers: dict[str, list[InvalidationHandler]] = {}
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = self._connect()
        self._closed = False
        self._listening = False  # a thread reads the connection (it closes it when done)
        self._up = False  # :meth:`run` hears notifications right now
        self.heard = 0  # notifications from other instances dispatched so far
        self.resets = 0  # times every cache was told that anything may have changed

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, keepalives=1, keepalives_idle=10,
                               keepalives_interval=5, keepalives_count=3)
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def live(self) -> bool:
        return self._up

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (``pg_stat_activity.pid``)."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None and not conn.closed else None

    def subscribe(self, kind: str, handler: InvalidationHandler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    async def run(self) -> None:
        send, receive = trio.open_memory_channel[_Event](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen_in_thread, send)
            self._up = True
            try:
                async for event in receive:
                    await self._dispatch(event)
            finally:
                self._up = False

    async def _listen_in_thread(self, send: trio.MemorySendChannel[_Event]) -> None:
        async with send:
            await trio.to_thread.run_sync(self._listen, send, abandon_on_cancel=True)

    async def _dispatch(self, event: _Event) -> None:
        if event.kind is None:
            # Down: caches that can fall back to the database stop serving; reloading now
            # would only wait for a database that is likely gone. Up: every change from now on
            # will be heard, so every cache reloads (or drops) what it holds.
            self._up = event.up
            if event.up:
                self.resets += 1
                for handlers in list(self._handlers.values()):
                    for handler in handlers:
                        await self._call(handler, None)
            return
        self.heard += 1
        log.debug("changed elsewhere: %s %s", event.kind, event.key)
        for handler in self._handlers.get(event.kind, ()):
            await self._call(handler, event.key)

    @staticmethod
    async def _call(handler: InvalidationHandler, key: str | None) -> None:
        try:
            await handler(key)
        except Exception:  # one cache failing to reload must not deafen the others
            log.exception("invalidating %s failed", key)

    # --- the listening thread ----------------------------------------------------------------

    def _listen(self, send: trio.MemorySendChannel[_Event]) -> None:
        def post(event: _Event) -> None:
            trio.from_thread.run_sync(send.send_nowait, event)

        with self._lock:
            if self._closed:
                return
            self._listening = True
        conn, failures = self._conn, 0
        try:
            while not self._closed:
                if conn is None:
                    try:
                        conn = self._conn = self._connect()
                    except psycopg.Error as exc:
                        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                        failures += 1
                        log.warning("cannot listen for other instances' changes (%s);"
                                    " retrying in %.1f s", exc, delay)
                        threading.Event().wait(delay)
                        continue
                    failures = 0
                    log.info("listening for other instances' changes again")
                    post(_Event(None, up=True))
                try:
                    for note in conn.notifies(timeout=POLL_SECONDS):
                        event = self._parse(note.payload)
                        if event is not None:
                            post(event)
                except psycopg.Error as exc:
                    if self._closed:
                        break
                    log.warning("lost the connection listening for other instances' changes"
                                " (%s): dropping every cache", exc)
                    conn.close()
                    conn = self._conn = None
                    post(_Event(None, up=False))
        except (trio.RunFinishedError, trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the server stopped listening
        finally:
            with self._lock:
                self._listening = False
            if self._closed and conn is not None:
                conn.close()

    def _parse(self, text: str) -> _Event | None:
        origin, _, change = text.partition(" ")
        if origin == self.origin:
            return None
        kind, _, key = change.partition(":")
        return _Event(kind, key or None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            listening = self._listening
        if not listening and self._conn is not None:
            self._conn.close()
            self._conn = None
