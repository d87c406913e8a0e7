"""The demo's SMS gateway and webhook receiver: a loopback HTTP server that keeps every
POST in memory, shown on the console's outbox page. Sample/demo use only."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prevent.contracts import utcnow
from prevent.platform.netutil import free_port

MAX_BODY = 256 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: str
    at: datetime

    @property
    def kind(self) -> str:
        return "sms" if self.path.startswith("/sms") else "webhook"


class HttpSink:
    """POST anything to it; it answers 200 with a reference id."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[ReceivedRequest] = []
        counter = itertools.count(1)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server API
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                body = self.rfile.read(length).decode("utf-8", "replace")
                sink.received.append(ReceivedRequest(self.path, dict(self.headers.items()), body,
                                                     utcnow()))
                reply = json.dumps({"id": f"demo-{next(counter)}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError:  # the configured port is taken (another instance, a test run)
            self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
