"""The dashboard's page and its files, served by the service itself (docs/dashboard.md).

`GET /` is the page and `GET /ui/{asset}` its script, styles and the chart library
(uPlot, MIT, with its licence): a fixed list of files shipped in the package, in
`reactor/serve/dashboard/`, read once when the routes are added. A request never reads
the disk and never names a path: an asset is looked up by name in that list, and any
other name is a 404. The page and its files need no token (they hold no data: the page
asks for the token and sends it with each request for data), so they are open paths.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

PAGE_PREFIX = "/ui/"
FOLDER = "dashboard"
# asset -> its media type; every file of the dashboard is here, nothing else is served
ASSETS = {
    "app.js": "text/javascript",
    "views.js": "text/javascript",
    "charts.js": "text/javascript",
    "format.js": "text/javascript",
    "dash.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}
# The page loads only its own files and talks only to its own service (no CDN: it must
# work offline, on an instrument's network). uPlot sets styles through the DOM, which
# style-src does not restrict; the empty icon is a data: URL (no /favicon.ico request).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file of the dashboard, read once from the package."""
    folder = resources.files("reactor.serve").joinpath(FOLDER)
    loaded = {
        name: Asset(folder.joinpath(name).read_bytes(), media) for name, media in ASSETS.items()
    }
    loaded["index.html"] = Asset(folder.joinpath("index.html").read_bytes(), "text/html")
    return loaded


def _answer(found: Asset) -> web.Response:
    response = web.Response(body=found.body, headers=PAGE_HEADERS)
    response.content_type = found.content_type
    response.charset = "utf-8"
    return response


async def index(request: web.Request) -> web.Response:
    return _answer(assets()["index.html"])


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise web.HTTPNotFound(text=f"no dashboard file named {name!r}")
    return _answer(assets()[name])


def is_page(path: str) -> bool:
    """The page and its files: open, like the health probes."""
    return path == "/" or path.startswith(PAGE_PREFIX)


def add_routes(app: web.Application) -> None:
    assets()  # read once at start, never inside a request
    app.router.add_get("/", index)
    app.router.add_get(PAGE_PREFIX + "{asset}", asset)
