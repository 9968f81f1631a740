"""The message archive's cost per chat message, in one process, without sockets.

    python -m bench.archive_cost                 # CPU µs per message, archive off and on
    valgrind --tool=callgrind python -m bench.archive_cost --archive on --messages 2000 --reps 1

The whole-server figure (``messages`` in RESULTS.md, per server CPU-second) moves by ±15 % from
one round to the next on a shared virtual machine; a change to the archive's path is smaller
than that. This routes the same chat messages between 50 pairs of bound in-memory sessions
through the real router and hooks (parsing and sockets left out), archives each repetition's
batch at once, and reports the best repetition's CPU time per message. Under callgrind, the
difference between two message counts (e.g. 2,000 and 6,000, one repetition each) divided by
their difference is the instructions per message, a deterministic figure; its cache
simulation (``--cache-sim=yes``) shows the misses that make the server's steps costlier than
a loop's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio
from lxml import etree

from pubsubd.app import Server
from pubsubd.config import loads
from pubsubd.core.session import Session
from pubsubd.jid import JID
from pubsubd.modules.xep0313_mam import MamModule
from pubsubd.storage.interfaces import Query

PAIRS = 50
_BODY_TAGS = ("{jabber:client}body",)  # the child tags the stream parser notes for a chat


def _config(data: Path, archive: bool) -> str:
    return (f"domains: [example.test]\ndata_dir: {data}\n"
            f"storage: {{path: {data / 'db.sqlite3'}}}\ncontrol: {{enabled: false}}\n"
            f"mam: {{enabled: {'true' if archive else 'false'}}}\n")


def _message(to: JID, n: int) -> etree._Element:
    return etree.fromstring(
        f'<message xmlns="jabber:client" to="{to}" type="chat" id="m{n}">'
        f"<body>hello number {n} from the load generator</body></message>".encode())


async def measure(archive: bool, messages: int, reps: int, data: Path) -> tuple[float, int]:
    """(best CPU µs per message over ``reps`` repetitions, messages archived in all)."""
    server = Server(loads(_config(data, archive)), base_dir=data)
    router = server.ctx.router
    mam = next((m for m in server.modules if isinstance(m, MamModule)), None)
    inboxes: list[trio.MemoryReceiveChannel[bytes]] = []

    def bind(jid: JID) -> Session:
        send, receive = trio.open_memory_channel[bytes](1_000_000)
        inboxes.append(receive)
        session = Session(jid, send, lambda error: None)
        server.ctx.sessions.add(session)
        return session

    senders = [bind(JID.parse(f"u{i}a@example.test/r")) for i in range(PAIRS)]
    peers = [bind(JID.parse(f"u{i}b@example.test/r")).jid for i in range(PAIRS)]
    best = float("inf")
    try:
        for rep in range(reps):
            started = time.process_time()
            for n in range(rep * messages, (rep + 1) * messages):
                await router.route_from_client(senders[n % PAIRS], _message(peers[n % PAIRS], n),
                                               _BODY_TAGS if archive else None)
                if n % 200 == 199:  # the clients read what they got
                    for inbox in inboxes:
                        while True:
                            try:
                                inbox.receive_nowait()
                            except trio.WouldBlock:
                                break
                    await trio.lowlevel.checkpoint()
            if mam is not None and mam.config.enabled:
                await mam._flush()  # one batch per repetition
            best = min(best, time.process_time() - started)
        archived = 0
        if mam is not None and mam.config.enabled:
            for sender in senders:
                archived += (await mam.store.page(Query(sender.jid.bare), 1)).count
    finally:
        server.services.stores.close()
    return best * 1e6 / messages, archived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--archive", choices=("on", "off", "both"), default="both")
    parser.add_argument("--messages", type=int, default=6000, help="per repetition")
    parser.add_argument("--reps", type=int, default=10, help="repetitions (the best counts)")
    args = parser.parse_args(argv)
    modes = (False, True) if args.archive == "both" else (args.archive == "on",)
    for archive in modes:
        with tempfile.TemporaryDirectory() as tmp:
            per_message, archived = trio.run(measure, archive, args.messages, args.reps,
                                             Path(tmp))
        print(f"archive {'on' if archive else 'off'}: {per_message:.2f} CPU µs per message"
              f" (best of {args.reps}; {archived} messages in the senders' archives)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
