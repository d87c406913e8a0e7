"""Demo mode: a locally served feed and an SMTP sink, so `make run` works with no network.

Everything here is SAMPLE DATA: the feed items are written for the demo, the
partner registry is fictional.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from aiosmtpd.controller import Controller

from prevent.contracts import utcnow
from prevent.platform.netutil import free_port

DEMO_DIR = Path(__file__).resolve().parent
SAMPLE_PARTNERS = DEMO_DIR / "partners.yaml"

DEMO_ITEMS = (
    ("demo-1", "At least 14 killed in gun attack on mosque during Friday prayers",
     "Gunmen opened fire on worshippers at a mosque during Friday prayers, killing at least 14 "
     "people and wounding dozens, officials said. (DEMO ITEM)"),
    ("demo-2", "Temple Run update adds new levels and characters",
     "The popular mobile game Temple Run received an update with new worlds. (DEMO ITEM)"),
    ("demo-3", "Interfaith choir performs at synagogue's anniversary concert",
     "A choir drawn from churches, mosques and synagogues performed at the concert. (DEMO ITEM)"),
)


def demo_feed_xml(minutes_ago: int = 10) -> bytes:
    """An RSS document whose items were published a few minutes ago (playbooks check age)."""
    when = format_datetime(utcnow() - timedelta(minutes=minutes_ago))
    items = "".join(
        f"<item><guid isPermaLink=\"false\">{guid}</guid><title>{escape(title)}</title>"
        f"<link>https://news.example.org/{guid}</link><description>{escape(summary)}</description>"
        f"<pubDate>{when}</pubDate></item>" for guid, title, summary in DEMO_ITEMS)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Demo world news (sample)</title><link>https://news.example.org/</link>"
            f"<description>Sample feed for the prevent demo</description>{items}</channel></rss>"
            ).encode()


class DemoFeedServer:
    """Serves the demo feed on a loopback port, in a thread."""

    def __init__(self, port: int = 0) -> None:
        body = demo_feed_xml()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server API
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/feed.xml"

    def start(self) -> DemoFeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class ReceivedMail:
    message_id: str
    to: tuple[str, ...]
    subject: str
    text: str
    raw: Message


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        msg = message_from_bytes(envelope.content, policy=default_policy)  # type: ignore[attr-defined]
        body = msg.get_body(preferencelist=("plain",))
        self.sink.received.append(ReceivedMail(
            message_id=str(msg.get("Message-ID", "")), to=tuple(envelope.rcpt_tos),  # type: ignore[attr-defined]
            subject=str(msg.get("Subject", "")).strip(), text=body.get_content() if body else "", raw=msg))
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server that keeps what it receives in memory (demo outbox, tests)."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[ReceivedMail] = []
        self.controller = Controller(_SinkHandler(self), hostname="127.0.0.1",
                                     port=port or free_port())

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
