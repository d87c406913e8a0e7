"""A local server of N feeds for the polling benchmark (run in its own process).

`python -m bench.feed_server PORT N CHANGED_PERCENT`: /feed/{i}.xml serves an RSS
document of 20 items (~10 KB) with an ETag; a conditional request for an unchanged
feed gets 304. POST /round starts a new round in which CHANGED_PERCENT of the feeds
change (a new item, a new ETag).
"""

from __future__ import annotations

import sys
from email.utils import formatdate

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
CHANGED_PERCENT = int(sys.argv[3]) if len(sys.argv) > 3 else 10
versions = [0] * N
round_no = 0


def body(i: int, version: int) -> bytes:
    date = formatdate(usegmt=True)
    items = "".join(
        f"<item><guid>feed{i}-item{version}-{k}</guid><title>Report {k} of feed {i}, version {version}:"
        f" local council approves new budget for road repairs</title>"
        f"<link>https://news{i}.example.org/{version}/{k}?utm_source=rss</link>"
        f"<description>&lt;p&gt;The council met on Tuesday and approved the plan after a long debate "
        f"about priorities for the coming year.&lt;/p&gt;</description><pubDate>{date}</pubDate></item>"
        for k in range(20))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {i}</title>'
            f"<link>https://news{i}.example.org/</link><description>bench</description>{items}"
            f"</channel></rss>").encode()


async def feed(request: Request) -> Response:
    i = int(request.path_params["i"])
    etag = f'"{i}-{versions[i]}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body(i, versions[i]), media_type="application/rss+xml",
                    headers={"ETag": etag})


async def new_round(request: Request) -> Response:
    global round_no
    round_no += 1
    step = max(1, 100 // max(1, CHANGED_PERCENT))
    for i in range(0, N, step):
        versions[i] += 1
    return PlainTextResponse(str(round_no))


app = Starlette(routes=[Route("/feed/{i:int}.xml", feed), Route("/round", new_round, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
