"""kill -9 in the middle of a publish storm loses no acknowledged item, on SQLite and on
PostgreSQL: a publish is answered only after its transaction committed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trio
from harness import ServerProcess, connect, run

from pubsubd.config import StorageConfig
from pubsubd.storage.backends import open_backend

from .pubsub_helpers import PUBSUB, PUBSUB_PLUGINS, raw_iq, service_jid

# Publishes in all, IN_FLIGHT at a time: several group-commit bursts' worth in flight (the
# server stores what has queued up meanwhile in one transaction), so the kill lands between
# two of them; a new publish leaves only when one is answered, so the storm is still going
# when the kill lands however fast the server answers.
STORM = 2000
IN_FLIGHT = 400
KILL_AFTER = 60  # acknowledged publishes before the kill


def publish_xml(item_id: str) -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='storm'><item id='{item_id}'>"
            f"<entry xmlns='http://www.w3.org/2005/Atom'><title>{item_id}</title></entry>"
            "</item></publish></pubsub>")


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "postgres":
        return {"url": str(request.getfixturevalue("pg_url"))}
    return {"url": f"sqlite:///{tmp_path}/var/crash.sqlite3"}


def test_kill_during_a_publish_storm_keeps_every_acknowledged_item(
        tmp_path: Path, storage: dict[str, str]) -> None:
    server = ServerProcess(tmp_path, extra={"storage": storage,
                                            "pubsub": {"max_items": STORM}})
    server.start()
    acked: list[str] = []
    try:
        alice = server.add_user("alice")
        svc = service_jid(server)

        async def storm() -> None:
            client = await connect(server, alice, plugins=PUBSUB_PLUGINS)
            await client.plugin["xep_0060"].create_node(svc, "storm")

            window = asyncio.Semaphore(IN_FLIGHT)

            async def publish(n: int) -> None:
                async with window:
                    if len(acked) >= KILL_AFTER:
                        return  # the server is gone: nothing more to send
                    await raw_iq(client, svc, "set", publish_xml(f"i{n}"))
                acked.append(f"i{n}")
                if len(acked) == KILL_AFTER:
                    server.kill()  # SIGKILL while the other publishes are in flight

            await asyncio.gather(*(publish(n) for n in range(STORM)), return_exceptions=True)

        run(storm())
    finally:
        if server.alive():
            server.kill()
    assert KILL_AFTER <= len(acked) < STORM, "the kill must land in the middle of the storm"

    async def stored() -> set[str]:
        stores = open_backend(StorageConfig(**storage), tmp_path)  # type: ignore[arg-type]
        try:
            return {item.item_id for item in await stores.pubsub.get_items(svc, "storm")}
        finally:
            stores.close()

    kept = trio.run(stored)
    assert set(acked) <= kept, sorted(set(acked) - kept)
