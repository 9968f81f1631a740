"""The fan-out's subscribers count notifications in the bytes they read (Connection.count_raw):
every marker counts once, also one cut in two by the reads, and a closed stream is an error."""

from __future__ import annotations

import asyncio

import pytest

from bench.wire import Connection, Target, XmppError

MARKER = b"urn:bench:item:"


async def count_from(chunks: list[bytes], wanted: int) -> float:
    """``count_raw`` on a real loopback socket whose peer writes ``chunks`` one by one, then
    closes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)  # lets each chunk arrive as a read of its own
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = await Connection.open(Target("127.0.0.1", port, "example.test"))
        try:
            return await conn.count_raw(MARKER, wanted)
        finally:
            conn.abort()
    finally:
        server.close()


def notification(i: int) -> bytes:
    return (f"<message><event><items><item id='item-{i}'><entry><id>urn:bench:item:{i}</id>"
            f"</entry></item></items></event></message>").encode()


def test_every_marker_counts_once_also_across_reads() -> None:
    stream = b"".join(notification(i) for i in range(5))
    cut = stream.index(MARKER, stream.index(MARKER) + 1) + 6  # inside the second marker
    assert asyncio.run(count_from([stream[:cut], stream[cut:]], 5)) > 0


def test_a_stream_that_ends_short_is_an_error() -> None:
    with pytest.raises(XmppError, match="after 2 of 3"):
        asyncio.run(count_from([notification(0) + notification(1)], 3))
