"""The API ceiling: a bare aiohttp handler answering `{"late": false}` on every GET path,
nothing else (no middleware, no logging). `python -m tests.bench.bare PORT`; loopback only.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def answer(request: web.Request) -> web.Response:
    return web.json_response({"late": False})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def main(argv: list[str]) -> int:
    app = web.Application()
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=int(argv[0]), print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
