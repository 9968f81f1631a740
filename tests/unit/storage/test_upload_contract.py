"""UploadStore contract (XEP-0363 slots and files), over every backend."""

from __future__ import annotations

from pubsubd.storage.backends import Stores
from pubsubd.storage.interfaces import UploadRecord, UploadStore

from .backend_params import Backend


def uploads_of(stores: Stores) -> UploadStore:
    return stores.uploads


def slot(slot_id: str, owner: str = "a@x", size: int = 100,
         granted: float = 1000.0) -> UploadRecord:
    return UploadRecord(slot_id, owner, f"{slot_id}.png", size, "image/png", granted)


async def test_slot_then_upload_once(stores: Stores) -> None:
    uploads = uploads_of(stores)
    assert await uploads.get("s1") is None
    await uploads.add(slot("s1"))
    assert await uploads.get("s1") == slot("s1")
    assert await uploads.mark_uploaded("s1", 1010.0)
    assert not await uploads.mark_uploaded("s1", 1020.0)  # a slot takes one upload
    assert not await uploads.mark_uploaded("nope", 1020.0)
    stored = await uploads.get("s1")
    assert stored is not None and stored.uploaded == 1010.0
    await uploads.delete("s1")
    assert await uploads.get("s1") is None


async def test_quota_counts_files_and_pending_slots(stores: Stores) -> None:
    uploads = uploads_of(stores)
    await uploads.add(slot("old-slot", size=1, granted=10.0))  # never used, stale
    await uploads.add(slot("file", size=100, granted=20.0))
    await uploads.mark_uploaded("file", 30.0)
    await uploads.add(slot("fresh-slot", size=50, granted=900.0))
    await uploads.add(slot("other", owner="b@x", size=7, granted=900.0))
    assert await uploads.bytes_used("a@x", slots_since=500.0) == 150
    assert await uploads.bytes_used("b@x", slots_since=500.0) == 7
    assert await uploads.bytes_used("c@x", slots_since=0.0) == 0


async def test_expired_files_and_stale_slots(stores: Stores) -> None:
    uploads = uploads_of(stores)
    await uploads.add(slot("stale", granted=10.0))
    await uploads.add(slot("old-file", granted=20.0))
    await uploads.mark_uploaded("old-file", 25.0)
    await uploads.add(slot("new-file", granted=800.0))
    await uploads.mark_uploaded("new-file", 810.0)
    await uploads.add(slot("pending", granted=900.0))
    found = await uploads.expired(uploaded_before=100.0, granted_before=500.0)
    assert [r.slot_id for r in found] == ["stale", "old-file"]
    assert [r.slot_id for r in await uploads.expired(100.0, 500.0, limit=1)] == ["stale"]


async def test_survives_reopening(backend: Backend) -> None:
    await uploads_of(backend.stores).add(slot("kept"))
    await uploads_of(backend.stores).mark_uploaded("kept", 1001.0)
    record = await uploads_of(backend.reopen()).get("kept")
    assert record is not None and record.uploaded == 1001.0
