"""Fetching feeds: network only, never parsing (Miniflux's split).

One shared ``httpx.AsyncClient``; conditional GET with the validators the caller
kept; the body is capped while streaming (abort, don't buffer); ``file:`` URLs are
read from disk so `prevent feeds check` and tests work offline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from prevent import __version__

USER_AGENT = f"prevent/{__version__} (+https://github.com/prevent-project/prevent; feed watcher)"
MAX_BODY_BYTES = 10 * 1024 * 1024


class FetchError(Exception):
    """A fetch that failed; ``kind`` groups failures for per-feed error counts."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # timeout | connect | http_4xx | http_5xx | rate_limited | too_large | refused
        self.retry_after = retry_after


@dataclass(frozen=True)
class FetchResult:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    duration_ms: float = 0.0

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def new_client(*, timeout: float = 20.0, connect_timeout: float = 5.0,
               max_redirects: int = 5) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        follow_redirects=True, max_redirects=max_redirects,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
    )


async def fetch(client: httpx.AsyncClient, url: str, *, etag: str | None = None,
                last_modified: str | None = None, max_bytes: int = MAX_BODY_BYTES) -> FetchResult:
    if url.startswith("file:"):
        return await _read_file(url, max_bytes)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    started = time.perf_counter()
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return FetchResult(304, b"", dict(response.headers), etag, last_modified,
                                   _ms(started))
            _raise_for_status(response)
            body = await _read_capped(response, max_bytes)
            return FetchResult(response.status_code, body, dict(response.headers),
                               response.headers.get("etag"), response.headers.get("last-modified"),
                               _ms(started))
    except httpx.TimeoutException as exc:
        raise FetchError("timeout", f"timed out fetching {url}") from exc
    except httpx.TooManyRedirects as exc:
        raise FetchError("redirects", f"too many redirects fetching {url}") from exc
    except httpx.TransportError as exc:
        raise FetchError("connect", f"cannot reach {url}: {type(exc).__name__}") from exc


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _raise_for_status(response: httpx.Response) -> None:
    code = response.status_code
    if code < 400:
        return
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if code == 429:
        raise FetchError("rate_limited", f"HTTP 429 from {response.url}", retry_after=retry_after)
    kind = "http_5xx" if code >= 500 else "http_4xx"
    raise FetchError(kind, f"HTTP {code} from {response.url}", retry_after=retry_after)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too_large", f"{response.url} declares {declared} bytes (> {max_bytes})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decompressed: the cap applies after gzip
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("too_large", f"{response.url} body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _read_file(url: str, max_bytes: int) -> FetchResult:
    path = Path(unquote(urlparse(url).path))
    try:
        body = await asyncio.to_thread(_read_capped_file, path, max_bytes)
    except OSError as exc:
        raise FetchError("connect", f"cannot read {path}: {exc.strerror}") from exc
    return FetchResult(200, body)


def _read_capped_file(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise FetchError("too_large", f"{path} is {size} bytes (> {max_bytes})")
    return path.read_bytes()
