"""An httpx transport whose connections go through the address guard.

httpx's own ``AsyncHTTPTransport`` takes no network backend, and the guard
(:class:`feeds.netguard.GuardedBackend`) is one. httpcore's connection pool does take one, so
this transport wraps such a pool through the public interfaces of both libraries: an
``httpx.Request`` becomes an ``httpcore.Request``, the answer becomes an ``httpx.Response``,
and httpcore's exceptions become the httpx exceptions of the same name, which callers catch.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from feeds.netguard import AddressPolicy, GuardedBackend

# Most specific first: the first matching httpcore class decides the httpx class.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_class, httpx_class in _ERRORS:
            if isinstance(exc, core_class):
                raise httpx_class(str(exc), request=request) from exc
        raise


class _ResponseBody(httpx.AsyncByteStream):
    """httpcore's response stream, read with httpx exceptions."""

    def __init__(self, request: httpx.Request, stream: AsyncIterable[bytes]) -> None:
        self._request = request
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over connections that only reach addresses ``policy`` allows."""

    def __init__(self, policy: AddressPolicy, max_connections: int) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            network_backend=GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors(request):
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)  # an async pool streams asynchronously
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseBody(request, response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
