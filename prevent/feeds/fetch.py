"""Fetching feeds: network only, never parsing (Miniflux's split).

One shared :class:`Fetcher` per process: one ``httpx.AsyncClient`` (connection reuse,
HTTP/2 when the ``h2`` package is installed), a bound on fetches in flight overall and
per host, a total deadline per fetch on top of connect/read timeouts, conditional GET
with the validators the caller kept, the body capped while streaming (after
decompression: a gzip bomb is cut off, not buffered), a redirect limit, and the SSRF
guard (:mod:`prevent.platform.netguard`) under every connection, redirects included.
``file:`` URLs are read from disk so `prevent feeds check` and local feeds work offline.

Errors are :class:`FetchError` with a ``kind`` (the per-feed error counts group by it):
timeout, connect, tls, redirects, refused, http_4xx, http_5xx, rate_limited, too_large.
"""

from __future__ import annotations

import asyncio
import importlib.util
import select
import socket
import ssl
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from prevent import __version__
from prevent.feeds.schedule import max_age_seconds
from prevent.platform.config import Settings
from prevent.platform.netguard import BlockedAddress, GuardedTransport

__all__ = ["USER_AGENT", "FetchError", "FetchResult", "Fetcher", "fetch", "new_client",
           "parse_retry_after"]

USER_AGENT = (f"prevent/{__version__} (feed watcher; police community-engagement alerts; "
              "+https://github.com/prevent-project/prevent)")
ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml, "
          "application/cap+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, "
          "application/geo+json;q=0.9, application/json;q=0.8, text/html;q=0.5, */*;q=0.3")
MAX_BODY_BYTES = 10 * 1024 * 1024
HTTP2 = importlib.util.find_spec("h2") is not None


class FetchError(Exception):
    """A fetch that failed; ``kind`` groups failures for per-feed error counts."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class FetchResult:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    etag: str | None = None
    last_modified: str | None = None
    duration_ms: float = 0.0
    url: str = ""  # after redirects

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def max_age(self) -> float | None:
        return max_age_seconds(self.headers.get("cache-control"))

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class _Stream(httpcore.AsyncNetworkStream):
    """An anyio stream whose ``is_readable`` is one poll() of its socket.

    httpcore asks every idle connection of the pool "is_readable?" (did the server close
    it?) each time it assigns a request; anyio builds a dict of socket attributes and calls
    getpeername() to answer, which made the pool's bookkeeping a large part of a 304.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:  # noqa: ASYNC109
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and _POLL:
            if self._sock is None:
                self._sock = self._inner.get_extra_info("socket")
            fd = self._sock.fileno() if self._sock is not None else -1
            if fd < 0:
                return True  # gone: as if the next read would return b""
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return self._inner.get_extra_info(info)


_POLL = sys.platform != "win32" and hasattr(select, "poll")


class _Backend(httpcore.AnyIOBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        return _Stream(await super().connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                 socket_options=socket_options))


def new_client(settings: Settings | None = None) -> httpx.AsyncClient:
    """The one client a process shares for feeds (and WebSub hubs)."""
    s = settings or Settings()
    limits = httpx.Limits(max_connections=s.feed_max_concurrency,
                          max_keepalive_connections=min(s.feed_max_concurrency, 50))
    return httpx.AsyncClient(
        # The SSRF guard under every connection (redirects included), HTTP/2 when available.
        transport=GuardedTransport(allow_private=s.allow_private_addresses, limits=limits,
                                   http2=HTTP2, inner=_Backend()),
        timeout=httpx.Timeout(connect=s.feed_connect_timeout_seconds, read=s.feed_read_timeout_seconds,
                              write=s.feed_read_timeout_seconds, pool=s.feed_total_timeout_seconds),
        follow_redirects=True, max_redirects=s.feed_max_redirects, trust_env=False,
        # httpx adds Accept-Encoding for what it can decode (gzip, deflate; br/zstd if installed).
        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
    )


class Fetcher:
    """Shared client plus concurrency bounds: at most ``max_concurrency`` fetches in flight,
    ``per_host`` per host, so 2,000 feeds never open 2,000 sockets or hammer one site."""

    def __init__(self, client: httpx.AsyncClient, *, max_concurrency: int = 100, per_host: int = 4,
                 total_timeout: float = 30.0, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.client = client
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        self._all = asyncio.Semaphore(max_concurrency)
        self._per_host_limit = per_host
        self._hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self._per_host_limit))

    @classmethod
    def from_settings(cls, client: httpx.AsyncClient, settings: Settings) -> Fetcher:
        return cls(client, max_concurrency=settings.feed_max_concurrency,
                   per_host=settings.feed_per_host_concurrency,
                   total_timeout=settings.feed_total_timeout_seconds,
                   max_bytes=settings.feed_max_body_bytes)

    async def fetch(self, url: str, *, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        host = (urlsplit(url).hostname or "").lower()
        async with self._all, self._hosts[host]:
            return await fetch(self.client, url, etag=etag, last_modified=last_modified,
                               max_bytes=self.max_bytes, total_timeout=self.total_timeout)


async def fetch(client: httpx.AsyncClient, url: str, *, etag: str | None = None,
                last_modified: str | None = None, max_bytes: int = MAX_BODY_BYTES,
                total_timeout: float = 30.0) -> FetchResult:
    """One GET. A 304 returns at once with an empty body; errors raise FetchError."""
    if url.startswith("file:"):
        return await _read_file(url, max_bytes)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    started = time.perf_counter()
    try:
        # The client's timeouts bound each read; this bounds the whole fetch, so a
        # server trickling one byte per read-timeout cannot hold a slot forever.
        async with asyncio.timeout(total_timeout):
            return await _get(client, url, headers, etag, last_modified, max_bytes, started)
    except TimeoutError as exc:
        raise FetchError("timeout", f"{url}: no complete response within {total_timeout:g}s") from exc
    except httpx.TimeoutException as exc:
        raise FetchError("timeout", f"{url}: timed out ({type(exc).__name__})") from exc
    except httpx.TooManyRedirects as exc:
        raise FetchError("redirects", f"{url}: too many redirects") from exc
    except BlockedAddress as exc:
        raise FetchError("refused", f"{url}: {exc}") from exc
    except httpx.UnsupportedProtocol as exc:
        raise FetchError("refused", f"{url}: {exc}") from exc
    except httpx.TransportError as exc:
        kind = "tls" if _caused_by_tls(exc) else "connect"
        raise FetchError(kind, f"{url}: cannot connect: {exc or type(exc).__name__}") from exc


async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str], etag: str | None,
               last_modified: str | None, max_bytes: int, started: float) -> FetchResult:
    async with client.stream("GET", url, headers=headers) as response:
        hdrs = {k.lower(): v for k, v in response.headers.items()}
        final = str(response.url)
        if response.status_code == 304:
            # Read the (empty) rest of the message: a response closed half-read closes its
            # connection too, and a new connection per unchanged feed (resolve, guard,
            # connect) would be most of what a 304 costs.
            await response.aread()
            # Validators stay as they were unless the server sent new ones.
            return FetchResult(304, b"", hdrs, hdrs.get("etag", etag),
                               hdrs.get("last-modified", last_modified), _ms(started), final)
        _raise_for_status(response, url)
        body = await _read_capped(response, max_bytes, url)
        return FetchResult(response.status_code, body, hdrs, hdrs.get("etag"),
                           hdrs.get("last-modified"), _ms(started), final)


def _caused_by_tls(exc: BaseException | None) -> bool:
    for _ in range(5):  # httpx error <- httpcore error <- ssl error
        if exc is None:
            return False
        if isinstance(exc, ssl.SSLError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _raise_for_status(response: httpx.Response, url: str) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if code == 429:
        raise FetchError("rate_limited", f"{url}: HTTP 429 Too Many Requests",
                         retry_after=retry_after, status=code)
    if code >= 500:
        raise FetchError("http_5xx", f"{url}: HTTP {code}", retry_after=retry_after, status=code)
    if code >= 400:
        raise FetchError("http_4xx", f"{url}: HTTP {code}", retry_after=retry_after, status=code)
    # 1xx/3xx here: a redirect without Location, or something httpx did not follow.
    raise FetchError("http_4xx", f"{url}: unexpected HTTP {code}", status=code)


async def _read_capped(response: httpx.Response, max_bytes: int, url: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too_large", f"{url}: declares {declared} bytes (limit {max_bytes})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decompressed: the cap applies after gzip
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("too_large", f"{url}: body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


async def _read_file(url: str, max_bytes: int) -> FetchResult:
    path = Path(unquote(urlsplit(url).path))
    try:
        body = await asyncio.to_thread(_read_capped_file, path, max_bytes)
    except OSError as exc:
        raise FetchError("connect", f"cannot read {path}: {exc.strerror}") from exc
    return FetchResult(200, body, url=url)


def _read_capped_file(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise FetchError("too_large", f"{path} is {size} bytes (limit {max_bytes})")
    return path.read_bytes()
