"""Polite, bounded HTTP fetching of feed documents.

One :class:`Fetcher` serves every feed: it sends conditional requests so that an unchanged feed
costs a 304, follows redirects itself so that every hop goes through the address check and a
permanent move is reported, and bounds everything a remote server controls: time, body size
(counted after decompression, decoded here in bounded steps so a compression bomb never
inflates in memory), concurrency per host and overall. Errors never raise: they come back as a
:class:`FetchResult` with an :class:`ErrorKind`, because to the poller a failing feed is data.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import httpx
import trio

from feeds.guarded_transport import GuardedTransport
from feeds.netguard import AddressPolicy, BlockedAddressError, ResolveError

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})  # RFC 9110 §15.4.2, §15.4.9
RETRY_AFTER_STATUSES = frozenset({429, 503})  # RFC 9110 §10.2.3, RFC 6585 §4
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, "
    "application/feed+json, application/xml;q=0.8, text/xml;q=0.8, application/json;q=0.8, "
    "*/*;q=0.5"
)


def _version() -> str:
    try:
        return metadata.version("pubsubd")
    except metadata.PackageNotFoundError:
        return "0"


DEFAULT_USER_AGENT = f"pubsubd/{_version()} (+feed syndication over XMPP)"


class ErrorKind(enum.StrEnum):
    """Why a fetch produced no usable document; also the keys of the error statistics."""

    INVALID_URL = "invalid-url"
    BLOCKED_ADDRESS = "blocked-address"
    DNS = "dns"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    TLS = "tls"
    PROTOCOL = "protocol"
    TOO_LARGE = "too-large"
    BAD_ENCODING = "bad-content-encoding"
    TOO_MANY_REDIRECTS = "too-many-redirects"
    BAD_REDIRECT = "bad-redirect"
    HTTP_STATUS = "http-status"


@dataclass(frozen=True, slots=True)
class FetchConfig:
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_body_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    max_concurrent: int = 32
    max_per_host: int = 2
    policy: AddressPolicy = field(default_factory=AddressPolicy)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one fetch; ``status`` is the final HTTP status, if any response came."""

    url: str
    final_url: str
    status: int | None = None
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = None
    retry_after: float | None = None
    max_age: float | None = None
    link_header: str = ""  # RFC 8288 Link, where a feed may name its WebSub hub
    error: ErrorKind | None = None
    error_detail: str = ""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def gone(self) -> bool:
        return self.status == 410


class _TooLarge(Exception):
    pass


class _BadEncoding(Exception):
    pass


class _Decoder:
    """Content-Encoding decoder that never produces more than ``limit`` bytes in total."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self._sniff_deflate = False
        encoding = encoding.strip().lower()
        self._z: zlib._Decompress | None
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
            self._sniff_deflate = True
        else:  # we only ask for gzip and deflate; stacked codings are not worth the risk
            raise _BadEncoding(f"unsupported content-encoding {encoding!r}")

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _TooLarge
        if data:
            self.chunks.append(data)

    def feed(self, data: bytes) -> None:
        if self._z is None:
            self._keep(data)
            return
        if self._sniff_deflate and data:
            # "deflate" means zlib-wrapped (RFC 9110 §8.4.1.2), yet some servers send raw
            # deflate; a zlib header is two bytes whose big-endian value is a multiple of 31.
            self._sniff_deflate = False
            if len(data) < 2 or (data[0] * 256 + data[1]) % 31 != 0:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            while data:
                # max_length bounds each step, so a bomb is caught before it inflates.
                self._keep(self._z.decompress(data, self.limit - self.size + 1))
                data = self._z.unconsumed_tail
        except zlib.error as exc:
            raise _BadEncoding(str(exc)) from exc

    def finish(self) -> bytes:
        if self._z is not None:
            try:
                self._keep(self._z.flush())
            except zlib.error as exc:
                raise _BadEncoding(str(exc)) from exc
        return b"".join(self.chunks)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def parse_max_age(headers: httpx.Headers, now: float) -> float | None:
    """Freshness lifetime from Cache-Control max-age, else Expires (RFC 9111 §4.2.1)."""
    for directive in headers.get("cache-control", "").split(","):
        name, _, arg = directive.strip().partition("=")
        if name.lower() == "max-age" and arg.strip().strip('"').isdigit():
            return float(arg.strip().strip('"'))
    expires = headers.get("expires")
    if expires:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(expires).timestamp() - now)
        except (TypeError, ValueError):
            return 0.0  # RFC 9111 §5.3: an invalid Expires means "already expired"
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _port(netloc: str, scheme: str) -> int:
    try:
        return urlsplit(f"//{netloc}").port or _DEFAULT_PORTS[scheme]
    except ValueError:  # out of range: httpx refuses the URL anyway
        return _DEFAULT_PORTS[scheme]


class Fetcher:
    """Fetches feed documents; use as ``async with Fetcher(config) as fetcher``."""

    def __init__(
        self,
        config: FetchConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or FetchConfig()
        self._clock = clock
        self._global = trio.CapacityLimiter(self.config.max_concurrent)
        self._per_host: dict[str, trio.CapacityLimiter] = {}
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(self.config.policy, self.config.max_concurrent),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(
                connect=self.config.connect_timeout,
                read=self.config.read_timeout,
                write=self.config.read_timeout,
                pool=self.config.total_timeout,
            ),
            headers={
                "User-Agent": self.config.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": "gzip, deflate",
            },
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _host_limiter(self, host: str) -> trio.CapacityLimiter:
        limiter = self._per_host.get(host)
        if limiter is None:
            limiter = self._per_host[host] = trio.CapacityLimiter(self.config.max_per_host)
        return limiter

    def _release_host(self, host: str) -> None:
        limiter = self._per_host.get(host)
        idle = limiter is not None and limiter.borrowed_tokens == 0
        if idle and limiter is not None and limiter.statistics().tasks_waiting == 0:
            del self._per_host[host]

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET ``url`` conditionally; never raises for network or HTTP trouble."""
        started = self._clock()
        result: FetchResult | None = None
        async with self._global:
            with trio.move_on_after(self.config.total_timeout):
                result = await self._follow(url, etag, last_modified)
        if result is None:
            result = FetchResult(url, url, error=ErrorKind.TIMEOUT, error_detail="total timeout")
        return _with_elapsed(result, self._clock() - started)

    async def _follow(self, url: str, etag: str | None, last_modified: str | None) -> FetchResult:
        current = url
        permanent: str | None = None
        all_permanent = True
        for _hop in range(self.config.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                kind = ErrorKind.INVALID_URL if current == url else ErrorKind.BAD_REDIRECT
                detail = f"not fetchable: {current}"
                return FetchResult(url, current, error=kind, error_detail=detail)
            headers: dict[str, str] = {}
            if etag:
                headers["If-None-Match"] = etag  # RFC 9110 §13.1.2
            if last_modified:
                headers["If-Modified-Since"] = last_modified  # RFC 9110 §13.1.3
            host = parts.hostname.lower()
            if self.config.policy.refuses_literal(host, _port(parts.netloc, parts.scheme)):
                # Refused before httpx sees it: it rejects some numeric forms as invalid URLs,
                # which would hide that they are private addresses.
                return FetchResult(url, current, error=ErrorKind.BLOCKED_ADDRESS,
                                   error_detail=f"{host} is not a public address",
                                   permanent_redirect=permanent)
            try:
                async with self._host_limiter(host):
                    outcome = await self._request(url, current, headers)
            finally:
                self._release_host(host)
            if isinstance(outcome, FetchResult):
                return _with_redirect(outcome, permanent)
            status, location = outcome
            if not location:
                return FetchResult(
                    url, current, status=status, error=ErrorKind.BAD_REDIRECT,
                    error_detail=f"HTTP {status} without Location", permanent_redirect=permanent,
                )
            target = urljoin(current, location.strip())
            all_permanent = all_permanent and status in PERMANENT_REDIRECTS
            if all_permanent:
                permanent = target
            current = target
        return FetchResult(
            url, current, error=ErrorKind.TOO_MANY_REDIRECTS,
            error_detail=f"more than {self.config.max_redirects} redirects",
            permanent_redirect=permanent,
        )

    async def _request(
        self, url: str, current: str, headers: dict[str, str]
    ) -> FetchResult | tuple[int, str]:
        """One hop: a finished result, or ``(status, location)`` for a redirect."""
        try:
            async with self._client.stream("GET", current, headers=headers) as response:
                status = response.status_code
                if status in REDIRECT_STATUSES:
                    return status, response.headers.get("location", "")
                now = self._clock()
                common = dict(
                    url=url,
                    final_url=current,
                    status=status,
                    content_type=response.headers.get("content-type", ""),
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                    max_age=parse_max_age(response.headers, now),
                    link_header=", ".join(response.headers.get_list("link")),
                )
                if status == 304:
                    # A 304 has no body (RFC 9110 §15.4.5), but httpcore only returns the
                    # connection to the pool once the response was read to its end; unread,
                    # every unchanged feed would cost a new TCP connection.
                    await response.aread()
                    return FetchResult(**common)  # type: ignore[arg-type]
                if status != 200:
                    retry = None
                    if status in RETRY_AFTER_STATUSES:
                        retry = parse_retry_after(response.headers.get("retry-after"), now)
                    return FetchResult(
                        **common,  # type: ignore[arg-type]
                        retry_after=retry,
                        error=ErrorKind.HTTP_STATUS,
                        error_detail=f"HTTP {status} {response.reason_phrase}".strip(),
                    )
                body = await self._read_body(response)
                return FetchResult(**common, body=body)  # type: ignore[arg-type]
        except _TooLarge:
            return FetchResult(
                url, current, error=ErrorKind.TOO_LARGE,
                error_detail=f"body larger than {self.config.max_body_bytes} bytes",
            )
        except _BadEncoding as exc:
            return FetchResult(url, current, error=ErrorKind.BAD_ENCODING, error_detail=str(exc))
        except BlockedAddressError as exc:
            return FetchResult(url, current, error=ErrorKind.BLOCKED_ADDRESS, error_detail=str(exc))
        except ResolveError as exc:
            return FetchResult(url, current, error=ErrorKind.DNS, error_detail=str(exc))
        except httpx.TimeoutException as exc:
            return FetchResult(url, current, error=ErrorKind.TIMEOUT, error_detail=_describe(exc))
        except httpx.ConnectError as exc:
            kind = ErrorKind.TLS if "SSL" in str(exc) else ErrorKind.CONNECT
            return FetchResult(url, current, error=kind, error_detail=_describe(exc))
        except (httpx.TransportError, httpx.InvalidURL, httpx.DecodingError) as exc:
            return FetchResult(url, current, error=ErrorKind.PROTOCOL, error_detail=_describe(exc))

    async def _read_body(self, response: httpx.Response) -> bytes:
        limit = self.config.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        decoder = _Decoder(response.headers.get("content-encoding", ""), limit)
        raw = 0
        async for chunk in response.aiter_raw():
            raw += len(chunk)
            if raw > limit:
                raise _TooLarge
            decoder.feed(chunk)
        return decoder.finish()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _with_redirect(result: FetchResult, permanent: str | None) -> FetchResult:
    return result if permanent is None else replace(result, permanent_redirect=permanent)


def _with_elapsed(result: FetchResult, elapsed: float) -> FetchResult:
    return replace(result, elapsed=elapsed)
