"""A real HTTP server on loopback for watcher tests: routes are plain functions.

A route gets the request (method, path, query, headers, body) and returns
``(status, headers, body)``; ``body`` may be an iterable of chunks with pauses
(``Stall``) to imitate a server that stops sending mid-body.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Stall:
    seconds: float


Body = bytes | Iterable["bytes | Stall"]
Reply = tuple[int, dict[str, str], Body]
Route = Callable[[Request], Reply]


@dataclass
class FeedServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, parts.path, dict(parse_qsl(parts.query)),
                              {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length) if length else b"")
                outer.requests.append(req)
                route = outer.routes.get(parts.path)
                status, headers, body = route(req) if route else (404, {}, b"not found")
                self.send_response(status)
                chunks = [body] if isinstance(body, bytes) else list(body)
                if isinstance(body, bytes) and "Content-Length" not in headers:
                    headers = {**headers, "Content-Length": str(len(body))}
                if not isinstance(body, bytes):
                    headers = {**headers, "Connection": "close"}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for chunk in chunks:
                        if isinstance(chunk, Stall):
                            self.wfile.flush()
                            time.sleep(chunk.seconds)
                        else:
                            self.wfile.write(chunk)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

            do_GET = do_POST = _handle  # http.server API

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # poll_interval 0.05 s: shutdown() waits for the loop's next poll (0.5 s by default) at
        # the end of every test that uses the server.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rss(*items: tuple[str, str], title: str = "Test wire", extra: str = "",
        pub_date: str | None = "Mon, 06 Jan 2025 10:00:00 GMT") -> bytes:
    """An RSS 2.0 document; items are (guid, title) pairs, titles inserted verbatim."""
    date = f"<pubDate>{pub_date}</pubDate>" if pub_date else ""
    body = "".join(f"<item><guid>{guid}</guid><title>{t}</title>"
                   f"<link>https://wire.example.org/{guid}</link>{date}"
                   f"<description>About {guid}.</description></item>" for guid, t in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{title}</title><link>https://wire.example.org/</link>{extra}{body}"
            f"</channel></rss>").encode()
