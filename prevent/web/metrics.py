"""``GET /metrics``: Prometheus text format 0.0.4, written by ``prometheus_client`` from
collectors of values read at scrape time: feeds (``feeds/metrics.py``), alerts and notices
(``opsmetrics.py``), consumer lag (``kafkalag.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from prevent.feeds.health import feed_health, prometheus_text
from prevent.web import deps
from prevent.web.opsmetrics import domain_metrics

router = APIRouter()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> PlainTextResponse:
    text = prometheus_text(await feed_health(deps.db(request)))
    text += await domain_metrics(deps.db(request))
    lag = getattr(deps.state(request), "lag", None)
    if lag is not None:  # consumer lag of the groups this process runs (console/kafkalag.py)
        text += await lag()
    return PlainTextResponse(text, media_type=CONTENT_TYPE)
