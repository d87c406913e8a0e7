"""The SSRF guard: internal addresses refused at connect time, the checked address used."""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prevent.netguard import BlockedAddress, check_url, guarded_client, is_forbidden


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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


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
