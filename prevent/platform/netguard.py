"""SSRF guard for outbound HTTP to addresses someone else chose (feed URLs, partner webhooks).

A URL check alone is not enough: a hostname can resolve to a public address when
checked and to 127.0.0.1 when connected (DNS rebinding). So the check lives in the
connection itself: :class:`GuardedBackend` resolves the host, refuses the connection
if *any* resolved address is loopback, private, link-local (cloud metadata),
multicast, reserved or unspecified, and connects to the address it checked. TLS
still verifies the certificate against the original hostname (httpcore passes it as
the SNI/server name), so pinning the address costs nothing in security.

``allow_private_addresses`` (settings) turns the refusal off, for the demo and tests.

Usage: ``async with guarded_client(settings) as client: await client.post(url, ...)``;
a refused address raises :class:`BlockedAddress` (not an ``httpx`` error: retrying
cannot help, callers treat it as permanent).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(Exception):
    """The URL points at an address outbound requests must not reach."""


# IPv6 prefixes whose addresses carry an IPv4 address a router or relay may reach on our
# behalf: NAT64 (RFC 6052 well-known and local-use) and the deprecated IPv4-compatible and
# IPv4-translated forms. 6to4 (2002::/16) and Teredo (2001::/32) are handled by ipaddress.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address embeds (mapped, 6to4, Teredo, NAT64, compatible)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in (*_NAT64, _IPV4_COMPATIBLE, _IPV4_TRANSLATED)):
        found.append(low32)
    return found


def is_forbidden(ip: IPAddress) -> bool:
    """True for every address that is not plainly on the public internet, including IPv6
    forms that embed such an IPv4 address (``2002:7f00:1::`` is 6to4 for 127.0.0.1)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        elif any(_plainly_forbidden(v4) for v4 in embedded_ipv4(ip)):
            return True
    return _plainly_forbidden(ip)


def _plainly_forbidden(ip: IPAddress) -> bool:
    return (not ip.is_global or ip.is_multicast or ip.is_loopback or ip.is_link_local
            or ip.is_private or ip.is_reserved or ip.is_unspecified)


def check_url(url: str) -> str:
    """Validate the shape of an outbound URL at the edge; returns its host.

    Only http(s), a host, no credentials in the URL. Addresses are checked at connect time.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress(f"only http and https URLs are allowed, not '{parts.scheme}'")
    if not parts.hostname:
        raise BlockedAddress("the URL has no host")
    if parts.username or parts.password:
        raise BlockedAddress("credentials in URLs are not allowed")
    return parts.hostname


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _checked(addresses: Iterable[str], host: str, allow_private: bool) -> str:
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not parsed:
        raise BlockedAddress(f"{host} did not resolve")
    if not allow_private:
        bad = [str(ip) for ip in parsed if is_forbidden(ip)]
        if bad:
            # Refuse when any record is internal: a mixed answer is how rebinding starts.
            raise BlockedAddress(f"{host} resolves to a non-public address ({bad[0]})")
    return str(parsed[0])


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check, then connect to exactly the checked address."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int, limit: float | None) -> str:
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            return _checked([str(literal)], host, self._allow_private)
        try:
            addresses = await asyncio.wait_for(self._resolver(host, port), limit)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        return _checked(addresses, host, self._allow_private)

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        address = await self.resolve(host, port, timeout)
        return await self._inner.connect_tcp(address, port, timeout=timeout,
                                             local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are not reachable through the guard")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore's exceptions and the public httpx ones they become (what httpx's own transport
# does; mirrored here because that mapping is not public API). Looked up along the raised
# exception's MRO, so the most specific one wins (ConnectTimeout before TimeoutException).
_HTTPCORE_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


@contextmanager
def _httpx_errors(request: httpx.Request | None) -> Iterator[None]:
    """Re-raise httpcore's exceptions as httpx's, with the request attached; anything else
    (``BlockedAddress`` from the guard, cancellation) passes through unchanged."""
    try:
        yield
    except Exception as exc:
        for cls in type(exc).__mro__:
            mapped = _HTTPCORE_ERRORS.get(cls)
            if mapped is not None:
                raise mapped(str(exc), request=request) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    """An httpcore response body as an httpx stream: errors mapped, closing closes it."""

    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool whose network backend is :class:`GuardedBackend`.

    Public APIs only (httpx's transport base class and byte stream, httpcore's pool and
    request): no proxies, no environment; HTTP/2 when asked for. ``inner`` is the backend
    the guard connects through once the address is checked (AnyIO's by default).
    """

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver,
                 verify: bool = True, limits: httpx.Limits = httpx.Limits(), http2: bool = False,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._connections = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True, http2=http2,
            network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver, inner=inner),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("GuardedTransport needs an async request body (use httpx.AsyncClient)")
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,  # the timeouts httpx's client put there
        )
        with _httpx_errors(request):
            core_response = await self._connections.handle_async_request(core_request)
        if not isinstance(core_response.stream, AsyncIterable):
            raise TypeError("httpcore returned a synchronous response body")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream, request),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        with _httpx_errors(None):  # as httpx's transport does on leaving its context
            await self._connections.aclose()


def guarded_client(allow_private: bool, *, timeout: float = 10.0,
                   resolver: Resolver = system_resolver, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that cannot reach internal addresses (unless allowed).

    Redirects are not followed: a redirect is a new URL someone else chose.
    """
    return httpx.AsyncClient(transport=GuardedTransport(allow_private=allow_private, resolver=resolver),
                             timeout=timeout, follow_redirects=False, trust_env=False, **kwargs)
