"""AccountStore contract: SCRAM keys only, uniqueness, flags, login stamps, durability."""

from __future__ import annotations

import time

import pytest

from pubsubd.storage.accounts import HASHES
from pubsubd.storage.interfaces import AccountExists, AccountStore
from pubsubd.stream.sasl import verify_password

from .backend_params import Backend


@pytest.fixture
def accounts(backend: Backend) -> AccountStore:
    return backend.stores.accounts


async def test_create_keeps_scram_keys_for_every_hash_never_the_password(
        accounts: AccountStore) -> None:
    before = time.time()
    await accounts.create("alice", "example.org", "s3cret")
    account = await accounts.get("alice", "example.org")
    assert account is not None
    assert (account.jid, account.enabled) == ("alice@example.org", True)
    assert before <= account.created <= time.time()
    assert (account.last_login, account.last_logout) == (None, None)
    assert sorted(account.credentials) == sorted(HASHES)
    for hash_name, creds in account.credentials.items():
        assert verify_password("s3cret", creds, hash_name)
        assert not verify_password("wrong", creds, hash_name)
        assert b"s3cret" not in creds.stored_key + creds.server_key + creds.salt
    assert await accounts.get("alice", "other.org") is None
    assert await accounts.get("bob", "example.org") is None


async def test_create_twice_raises_and_keeps_the_first_password(accounts: AccountStore) -> None:
    await accounts.create("alice", "example.org", "first")
    with pytest.raises(AccountExists):
        await accounts.create("alice", "example.org", "second")
    account = await accounts.get("alice", "example.org")
    assert account is not None
    assert verify_password("first", account.credentials["SHA-256"], "SHA-256")
    await accounts.create("alice", "other.org", "x")  # same name, other domain: distinct


async def test_set_password_replaces_every_key(accounts: AccountStore) -> None:
    assert not await accounts.set_password("ghost", "example.org", "x")
    await accounts.create("alice", "example.org", "old")
    assert await accounts.set_password("alice", "example.org", "new")
    account = await accounts.get("alice", "example.org")
    assert account is not None
    for hash_name, creds in account.credentials.items():
        assert verify_password("new", creds, hash_name)
        assert not verify_password("old", creds, hash_name)


async def test_enable_disable_and_delete(accounts: AccountStore) -> None:
    assert not await accounts.set_enabled("ghost", "example.org", False)
    await accounts.create("alice", "example.org", "pw")
    assert await accounts.set_enabled("alice", "example.org", False)
    assert (await accounts.get("alice", "example.org")).enabled is False  # type: ignore[union-attr]
    assert await accounts.set_enabled("alice", "example.org", True)
    assert (await accounts.get("alice", "example.org")).enabled is True  # type: ignore[union-attr]
    assert await accounts.delete("alice", "example.org")
    assert await accounts.get("alice", "example.org") is None
    assert not await accounts.delete("alice", "example.org")
    await accounts.create("alice", "example.org", "again")  # the name is free again


async def test_list_is_ordered_by_domain_then_username_and_filters(
        accounts: AccountStore) -> None:
    for user, domain in [("zoe", "a.org"), ("bob", "b.org"), ("amy", "b.org"), ("max", "a.org")]:
        await accounts.create(user, domain, "pw")
    assert [a.jid for a in await accounts.list()] == [
        "max@a.org", "zoe@a.org", "amy@b.org", "bob@b.org"]
    assert [a.jid for a in await accounts.list("b.org")] == ["amy@b.org", "bob@b.org"]
    assert await accounts.list("c.org") == []
    assert all(a.credentials for a in await accounts.list())


async def test_login_and_logout_stamps(accounts: AccountStore) -> None:
    await accounts.create("alice", "example.org", "pw")
    await accounts.record_logout("ghost", "example.org")  # no account: nothing happens
    before = time.time()
    await accounts.record_login("alice", "example.org")
    account = await accounts.get("alice", "example.org")
    assert account is not None and account.last_login is not None
    assert before <= account.last_login <= time.time()
    assert account.last_logout is None
    await accounts.record_logout("alice", "example.org")
    account = await accounts.get("alice", "example.org")
    assert account is not None and account.last_logout is not None
    assert account.last_logout >= account.last_login  # type: ignore[operator]
    listed = await accounts.list()
    assert (listed[0].last_login, listed[0].last_logout) == (
        account.last_login, account.last_logout)
    assert await accounts.get("ghost", "example.org") is None


async def test_accounts_survive_reopening(backend: Backend) -> None:
    accounts = backend.stores.accounts
    await accounts.create("alice", "example.org", "pw")
    await accounts.create("bob", "example.org", "pw")
    await accounts.set_enabled("bob", "example.org", False)
    await accounts.record_login("alice", "example.org")
    await accounts.record_logout("alice", "example.org")
    before = await accounts.get("alice", "example.org")
    accounts = backend.reopen().accounts
    after = await accounts.get("alice", "example.org")
    assert after == before
    assert (await accounts.get("bob", "example.org")).enabled is False  # type: ignore[union-attr]
