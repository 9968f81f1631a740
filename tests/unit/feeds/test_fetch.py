"""Fetching against a real local HTTP server."""

from __future__ import annotations

import gzip
import ipaddress

import pytest
import trio

from feeds.fetch import ErrorKind, FetchConfig, Fetcher, parse_retry_after
from feeds.netguard import AddressPolicy, is_public
from tests.feedserver import open_feed_server

LOCAL = AddressPolicy.from_strings(["127.0.0.1"])
RSS = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


def fetcher(**kwargs: object) -> Fetcher:
    kwargs.setdefault("policy", LOCAL)
    return Fetcher(FetchConfig(**kwargs))  # type: ignore[arg-type]


async def test_conditional_get_gives_304_with_etag_and_last_modified() -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.set("/f", RSS)
        first = await f.fetch(server.url("/f"))
        assert first.ok and first.body == RSS and first.etag and first.last_modified
        second = await f.fetch(server.url("/f"), etag=first.etag)
        assert second.not_modified and second.body == b"" and second.error is None
        assert server.requests[-1].headers["if-none-match"] == first.etag
        third = await f.fetch(server.url("/f"), last_modified=first.last_modified)
        assert third.status == 304
        server.set("/f", RSS + b" ")
        changed = await f.fetch(server.url("/f"), etag=first.etag)
        assert changed.status == 200 and changed.etag != first.etag


async def test_sends_honest_user_agent_and_accepts_compression() -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.set("/f", RSS)
        await f.fetch(server.url("/f"))
        seen = server.requests[0].headers
        assert seen["user-agent"].startswith("pubsubd/")
        assert "feed syndication over XMPP" in seen["user-agent"]
        assert "gzip" in seen["accept-encoding"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(encoding: str) -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.set("/f", RSS * 100, encoding=encoding)
        result = await f.fetch(server.url("/f"))
        assert result.ok and result.body == RSS * 100


async def test_body_limit_counts_decoded_bytes() -> None:
    bomb = b"\0" * 3_000_000
    async with open_feed_server() as server, fetcher(max_body_bytes=1_000_000) as f:
        server.set("/bomb", bomb, encoding="gzip")
        server.set("/big", b"x" * 1_500_000)
        server.set("/fits", b"y" * 900_000, encoding="gzip")
        assert len(gzip.compress(bomb)) < 1_000_000
        assert (await f.fetch(server.url("/bomb"))).error is ErrorKind.TOO_LARGE
        assert (await f.fetch(server.url("/big"))).error is ErrorKind.TOO_LARGE
        assert (await f.fetch(server.url("/fits"))).ok


async def test_permanent_redirect_reports_new_url() -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.set("/new", RSS)
        server.redirect("/old", "/new", 301)
        result = await f.fetch(server.url("/old"))
        assert result.ok and result.body == RSS
        assert result.permanent_redirect == server.url("/new")
        assert result.final_url == server.url("/new")


async def test_temporary_redirect_in_chain_is_not_permanent() -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.set("/c", RSS)
        server.redirect("/b", "/c", 302)
        server.redirect("/a", "/b", 308)
        result = await f.fetch(server.url("/a"))
        assert result.ok
        assert result.permanent_redirect == server.url("/b")
        server.redirect("/x", "/c", 302)
        assert (await f.fetch(server.url("/x"))).permanent_redirect is None


async def test_redirect_loop_is_cut() -> None:
    async with open_feed_server() as server, fetcher(max_redirects=5) as f:
        server.redirect("/loop", "/loop", 302)
        result = await f.fetch(server.url("/loop"))
        assert result.error is ErrorKind.TOO_MANY_REDIRECTS
        assert server.hits("/loop") == 6


async def test_private_address_refused_by_default() -> None:
    async with open_feed_server() as server, Fetcher() as f:
        server.set("/f", RSS)
        result = await f.fetch(server.url("/f"))
        assert result.error is ErrorKind.BLOCKED_ADDRESS
        assert server.requests == []
        result = await f.fetch(f"http://localhost:{server.port}/f")
        assert result.error is ErrorKind.BLOCKED_ADDRESS


async def test_redirect_to_private_address_refused() -> None:
    # The first hop is allowed by host name only, the redirect target resolves to loopback.
    policy = AddressPolicy.from_strings(["localhost"])
    async with open_feed_server() as server, Fetcher(FetchConfig(policy=policy)) as f:
        server.set("/f", RSS)
        server.redirect("/r", server.url("/f"), 302)
        result = await f.fetch(f"http://localhost:{server.port}/r")
        assert result.error is ErrorKind.BLOCKED_ADDRESS
        assert server.hits("/r") == 1 and server.hits("/f") == 0


def test_address_classification() -> None:
    assert is_public(ipaddress.ip_address("93.184.216.34"))
    for text in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1",
                 "224.0.0.1", "0.0.0.0", "fc00::1", "100.64.0.1", "240.0.0.1"]:
        assert not is_public(ipaddress.ip_address(text)), text
    policy = AddressPolicy.from_strings(["10.0.0.0/8"])
    assert policy.address_allowed(ipaddress.ip_address("10.9.9.9"))
    assert not policy.address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.address_allowed(ipaddress.ip_address("192.168.1.1"))


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_reported(status: int) -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.fail("/f", status, retry_after="120")
        result = await f.fetch(server.url("/f"))
        assert result.status == status and result.error is ErrorKind.HTTP_STATUS
        assert result.retry_after == 120.0


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412000.0) == 480.0
    assert parse_retry_after("soon", 0.0) is None


async def test_gone_and_server_error() -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.fail("/gone", 410)
        server.fail("/err", 500)
        assert (await f.fetch(server.url("/gone"))).gone
        err = await f.fetch(server.url("/err"))
        assert err.status == 500 and err.error is ErrorKind.HTTP_STATUS and not err.ok


async def test_cache_control_max_age_reported() -> None:
    async with open_feed_server() as server, fetcher() as f:
        server.set("/f", RSS, headers={"Cache-Control": "public, max-age=900"})
        assert (await f.fetch(server.url("/f"))).max_age == 900.0


async def test_read_timeout_and_total_timeout() -> None:
    async with open_feed_server() as server:
        server.set("/slow", RSS, delay=2.0)
        server.set("/drip", RSS * 50, chunk_size=100, chunk_delay=0.05)
        async with fetcher(read_timeout=0.2) as f:
            assert (await f.fetch(server.url("/slow"))).error is ErrorKind.TIMEOUT
        async with fetcher(total_timeout=0.3) as f:
            result = await f.fetch(server.url("/drip"))
            assert result.error is ErrorKind.TIMEOUT


async def test_per_host_limit_serializes_requests() -> None:
    async with open_feed_server() as server, fetcher(max_per_host=1) as f:
        server.set("/slow", RSS, delay=0.2)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(f.fetch, server.url("/slow"))
        assert trio.current_time() - start >= 0.6


async def test_unfetchable_urls() -> None:
    async with fetcher() as f:
        assert (await f.fetch("file:///etc/passwd")).error is ErrorKind.INVALID_URL
        assert (await f.fetch("http://nonexistent.invalid/")).error is ErrorKind.DNS


async def test_refused_connection_is_a_connect_error() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on the port any more
    async with fetcher() as f:
        result = await f.fetch(f"http://127.0.0.1:{port}/feed")
    assert result.error is ErrorKind.CONNECT
    assert result.error_detail


@pytest.mark.parametrize("host", ["127.000.000.001", "0177.0.0.1", "0x7f.1", "127.1",
                                  "2130706433", "[2002:7f00:1::]", "[::ffff:127.0.0.1]",
                                  "[64:ff9b::7f00:1]"])
async def test_numeric_forms_of_private_addresses_are_blocked(host: str) -> None:
    # Each is loopback to the C resolver; httpx rejects some as invalid URLs, which would
    # have hidden what they are.
    async with Fetcher() as f:
        result = await f.fetch(f"http://{host}/feed")
        assert result.error is ErrorKind.BLOCKED_ADDRESS, result


def test_ipv6_carrying_a_private_ipv4_is_not_public() -> None:
    for text in ["2002:7f00:1::", "2002:c0a8:101::1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
                 "64:ff9b::a00:1"]:
        assert not is_public(ipaddress.ip_address(text)), text
    assert is_public(ipaddress.ip_address("2002:5db8:d822::1"))  # 6to4 of 93.184.216.34
