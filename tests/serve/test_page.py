"""The dashboard's page and files (`reactor.serve.page`): served from the package, open
without the token (the data is not), a fixed list of files and nothing else, no CDN."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from reactor.serve.page import ASSETS, PAGE_PREFIX, assets
from tests.support.api import MakeClient
from tests.support.openapi import DOCUMENT, assert_documented

TOKEN = "s3cret-dashboard-token"


def test_every_file_the_page_loads_is_shipped_and_nothing_comes_from_elsewhere() -> None:
    page = assets()["index.html"].body.decode()
    loaded = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert loaded, page
    for url in loaded:
        assert url.startswith(("/ui/", "data:")), f"{url}: the page must work offline"
        if url.startswith("/ui/"):
            assert url.removeprefix(PAGE_PREFIX) in ASSETS, url
    scripts = "".join(assets()[name].body.decode() for name in ASSETS if name.endswith(".js"))
    for module in re.findall(r'from "\./([^"]+)"', scripts):
        assert module in ASSETS, module
    assert "http://" not in page and "https://" not in page
    assert "innerHTML" not in scripts.replace(assets()["uPlot.iife.min.js"].body.decode(), "")


def test_the_chart_library_is_shipped_with_its_licence() -> None:
    folder = resources.files("reactor.serve").joinpath("dashboard")
    assert "The MIT License" in folder.joinpath("uPlot.LICENSE").read_text()
    assert (
        folder.joinpath("uPlot.iife.min.js")
        .read_text()
        .startswith("/*! https://github.com/leeoniya/uPlot (v1.6.")
    )


async def test_the_page_and_its_files_need_no_token_and_the_data_does(
    make_client: MakeClient,
) -> None:
    client = await make_client(token=TOKEN)
    page = await client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for name, media in ASSETS.items():
        answer = await client.get(f"/ui/{name}")
        assert (answer.status, answer.content_type) == (200, media), name
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert (await client.get("/status")).status == 401
    assert (await client.get("/status/stream")).status == 401
    assert (await client.post("/requeue", params={"all": "true"})).status == 401


@pytest.mark.parametrize("path", ["/ui/index.html", "/ui/nothing.js", "/ui/..%2Fapi.py", "/ui/"])
async def test_only_the_listed_files_are_served(make_client: MakeClient, path: str) -> None:
    client = await make_client()
    answer = await client.get(path)
    assert answer.status == 404
    body = await answer.json()
    assert body["error"] == "not_found"


async def test_the_page_is_in_the_document(make_client: MakeClient) -> None:
    client = await make_client()
    assert "/" in DOCUMENT["paths"] and "/ui/{asset}" in DOCUMENT["paths"]
    missing = await client.get("/ui/nothing.js")
    assert_documented("/ui/{asset}", 404, await missing.json())
