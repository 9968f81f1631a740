"""Helpers shared by scenarios: account provisioning and logging in many clients at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from bench.wire import Connection, Target, XmppError, source_address

PASSWORD = "bench-password"


async def register_accounts(target: Target, names: Iterable[str], concurrency: int = 32,
                            password: str = PASSWORD) -> int:
    """Create accounts by XEP-0077 in-band registration, the same way on every server."""
    gate = asyncio.Semaphore(concurrency)
    count = 0

    async def one(name: str) -> None:
        nonlocal count
        async with gate:
            conn = await Connection.open(target)
            try:
                await conn.register(name, password)
                count += 1
            finally:
                await conn.close()

    async with asyncio.TaskGroup() as tg:
        for name in names:
            tg.create_task(one(name))
    return count


async def login_many(target: Target, logins: Sequence[tuple[str, str]], *, first_index: int = 0,
                     spread: int = 1, concurrency: int = 64, password: str = PASSWORD,
                     deadline: float = 60.0) -> list[Connection]:
    """Open, authenticate and bind one connection per (username, resource), in order."""
    gate = asyncio.Semaphore(concurrency)
    conns: list[Connection | None] = [None] * len(logins)

    async def one(i: int, username: str, resource: str) -> None:
        async with gate:
            conn = await Connection.open(target, source_address(first_index + i, spread),
                                         deadline=deadline)
            await conn.login(username, password, resource, deadline=deadline)
            conns[i] = conn

    async with asyncio.TaskGroup() as tg:
        for i, (username, resource) in enumerate(logins):
            tg.create_task(one(i, username, resource))
    return [c for c in conns if c is not None]


async def close_all(conns: Iterable[Connection], concurrency: int = 256) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(conn: Connection) -> None:
        async with gate:
            await conn.close()

    await asyncio.gather(*(one(c) for c in conns), return_exceptions=True)


async def drain(conn: Connection) -> None:
    """Read and discard whatever the server sends, until the connection ends."""
    try:
        while True:
            await conn.receive_some()
    except (XmppError, OSError, asyncio.CancelledError):
        return
