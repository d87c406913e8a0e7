"""The SSRF guard: internal addresses refused at connect time, the checked address used."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import pytest

from prevent.platform.netguard import (
    BlockedAddress,
    GuardedTransport,
    check_url,
    guarded_client,
    is_forbidden,
)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200",
    # S104: the wildcard is one of the addresses to refuse; nothing is bound
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00:ec2::254",  # noqa: S104
    "::ffff:127.0.0.1", "ff02::1",
])
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "http://user:pw@example.org/",
                                 "http:///nohost"])
def test_bad_url_shapes_are_refused(url: str) -> None:
    with pytest.raises(BlockedAddress):
        check_url(url)


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A loopback HTTP server with ``handler`` for a fixture: yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def local_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    yield from _serve(Handler)


async def test_a_name_resolving_to_loopback_is_refused(local_server: int) -> None:
    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with guarded_client(False, resolver=rebinding) as client:
        with pytest.raises(BlockedAddress, match="non-public"):
            await client.get(f"http://public.example.test:{local_server}/")
        with pytest.raises(BlockedAddress):
            await client.get(f"http://127.0.0.1:{local_server}/")


async def test_a_mixed_answer_is_refused(local_server: int) -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    async with guarded_client(False, resolver=mixed) as client:
        with pytest.raises(BlockedAddress):
            await client.get(f"http://mixed.example.test:{local_server}/")


async def test_the_connection_goes_to_the_checked_address(local_server: int) -> None:
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    # The name does not exist in DNS: reaching the server proves the checked address was used.
    async with guarded_client(True, resolver=resolver) as client:
        response = await client.get(f"http://only-in-our-resolver.invalid:{local_server}/")
    assert response.text == "ok" and calls == ["only-in-our-resolver.invalid"]


# The transport itself (public httpx/httpcore APIs only): errors become httpx's, with the
# request attached, when sending and while the body is read; closing closes the connections.

class _Recorded(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _RecordingBackend(httpcore.AnyIOBackend):
    def __init__(self) -> None:
        self.streams: list[_Recorded] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        stream = _Recorded(await super().connect_tcp(host, port, timeout=timeout,
                                                     local_address=local_address,
                                                     socket_options=socket_options))
        self.streams.append(stream)
        return stream


@pytest.fixture
def keepalive_server():
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/slow":
                time.sleep(1.0)
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            if self.path == "/short":  # promises 10 bytes, sends 2, hangs up
                self.wfile.write(b"ok")
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(b"0123456789")

        def log_message(self, *args: object) -> None:
            pass

    yield from _serve(Handler)


async def _loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_connections_are_kept_alive_and_closed_with_the_transport(keepalive_server: int) -> None:
    backend = _RecordingBackend()
    transport = GuardedTransport(allow_private=True, resolver=_loopback, inner=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            response = await client.get(f"http://a.example.test:{keepalive_server}/")
            assert response.content == b"0123456789"
        assert len(backend.streams) == 1 and not backend.streams[0].closed  # reused
    assert backend.streams[0].closed  # leaving the client closed the pool


async def test_closing_a_half_read_response_closes_its_connection(keepalive_server: int) -> None:
    backend = _RecordingBackend()
    transport = GuardedTransport(allow_private=True, resolver=_loopback, inner=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", f"http://a.example.test:{keepalive_server}/") as response:
            assert response.status_code == 200
        assert backend.streams[0].closed


async def test_a_refused_connection_is_an_httpx_connect_error_with_the_request() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = GuardedTransport(allow_private=True, resolver=_loopback)
    request = httpx.Request("GET", f"http://a.example.test:{port}/")
    with pytest.raises(httpx.ConnectError) as caught:
        await transport.handle_async_request(request)
    assert caught.value.request is request
    assert isinstance(caught.value.__cause__, httpcore.ConnectError)
    await transport.aclose()


async def test_a_body_cut_short_is_an_httpx_error_with_the_request(keepalive_server: int) -> None:
    transport = GuardedTransport(allow_private=True, resolver=_loopback)
    request = httpx.Request("GET", f"http://a.example.test:{keepalive_server}/short")
    response = await transport.handle_async_request(request)
    assert response.status_code == 200
    with pytest.raises(httpx.RemoteProtocolError) as caught:
        await response.aread()
    assert caught.value.request is request
    await response.aclose()
    await transport.aclose()


async def test_a_slow_server_is_an_httpx_read_timeout(keepalive_server: int) -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(allow_private=True, resolver=_loopback),
                                 timeout=httpx.Timeout(5.0, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.get(f"http://a.example.test:{keepalive_server}/slow")
    assert isinstance(caught.value.__cause__, httpcore.ReadTimeout)
