"""The OpenAPI document (`reactor/serve/openapi.json`): valid OpenAPI 3.1, in step with the app's
routes, served at `/openapi.json`, and true to what the app really answers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from multidict import MultiDict
from openapi_spec_validator import validate as validate_openapi

import reactor
from reactor.core.names import InvalidName, check_engine_id, check_job_id
from reactor.serve import api
from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR, SWEEPER
from tests.support.api import add_files, write_outputs
from tests.support.openapi import DOC_URI, DOCUMENT, REGISTRY, Validator, assert_documented
from tests.support.runs import ManualClock, RunDirs

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


def app_routes(run_dirs: RunDirs) -> set[tuple[str, str]]:
    app = create_app(run_dirs.config(), watch=False, sweep=False)
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # aiohttp adds HEAD to GET
    }


# ----------------------------------------------------------------- the document


def test_document_is_valid_openapi_3_1() -> None:
    validate_openapi(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1.")


def test_document_version_is_the_package_version() -> None:
    assert DOCUMENT["info"]["version"] == reactor.__version__


def test_document_paths_are_exactly_the_app_routes(run_dirs: RunDirs) -> None:
    """Every route the app serves is documented, and nothing else is."""
    documented = {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    }
    assert documented == app_routes(run_dirs)


def test_every_response_schema_is_itself_valid_json_schema() -> None:
    for schema in DOCUMENT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_open_paths_have_no_security_and_the_rest_have_token_schemes() -> None:
    """The document's access rules match `OPEN_PATHS` in api.py."""
    from reactor.serve.api import OPEN_PATHS
    from reactor.serve.page import is_page

    for path, item in DOCUMENT["paths"].items():
        (operation,) = item.values()
        if path in OPEN_PATHS or is_page(path):
            assert operation.get("security") == [], path
            assert not {"401", "403"} & set(operation["responses"]), path
        else:
            assert "security" not in operation, path  # the document-wide rule applies
            assert {"401", "403"} <= set(operation["responses"]), path
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert (schemes["token"]["in"], schemes["token"]["name"]) == ("query", "token")


def test_document_says_job_ids_are_the_capability() -> None:
    """/keepalive and /completed take no engine id (seed protocol): the document says why
    that is safe, where an engine author reads about job_id."""
    description = DOCUMENT["components"]["parameters"]["job_id"]["description"]
    assert "capability" in description
    assert "128 random bits" in description
    for path in ["/keepalive", "/completed"]:
        names = {p["$ref"].rsplit("/", 1)[1] for p in DOCUMENT["paths"][path]["get"]["parameters"]}
        assert names == {"job_id", "job_state"}


@functools.cache
def documented(schema: str) -> Callable[[str], bool]:
    validator = Validator({"$ref": f"{DOC_URI}#/components/schemas/{schema}"}, registry=REGISTRY)
    return validator.is_valid


def accepted(check: Callable[[str], str]) -> Callable[[str], bool]:
    def accepts(value: str) -> bool:
        try:
            check(value)
        except InvalidName:
            return False
        return True

    return accepts


def handler_accepts_job_state(value: str) -> bool:
    # The check reads only `request.query` (a mocked request costs ~7 ms: too slow here).
    request = cast(web.Request, SimpleNamespace(query=MultiDict(job_state=value)))
    try:
        api._job_state(request)
    except api.ApiError:
        return False
    return True


HOSTILE_TEXT = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=st.characters(codec="ascii"), max_size=70),
    st.sampled_from(
        ["", "/", "..", ".h", "-1", "../1", "é", "a\x00", "\n", "x" * 64, "9" * 41, "gpu\n", "1\n"]
    ),
)


@given(
    value=st.one_of(HOSTILE_TEXT, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,70}", fullmatch=True))
)
@settings(max_examples=200, deadline=None)
def test_engine_id_schema_is_exactly_the_check(value: str) -> None:
    """The document accepts exactly the engine ids names.py accepts."""
    assert documented("EngineId")(value) == accepted(check_engine_id)(value), value


@given(value=st.one_of(HOSTILE_TEXT, st.from_regex(r"[0-9]{1,45}", fullmatch=True)))
@settings(max_examples=200, deadline=None)
def test_job_id_schema_is_exactly_the_check(value: str) -> None:
    assert documented("JobId")(value) == accepted(check_job_id)(value), value


@given(value=st.one_of(HOSTILE_TEXT, st.from_regex(r"[ -~]{1,70}", fullmatch=True)))
@settings(max_examples=200, deadline=None)
def test_job_state_schema_is_within_what_the_handler_takes(value: str) -> None:
    """What the document allows (printable ASCII) the handler takes; it also takes other
    printable Unicode, which the document mentions but does not promise."""
    if documented("JobState")(value):
        assert handler_accepts_job_state(value), value
    elif value.isascii():
        assert not handler_accepts_job_state(value), value


# ---------------------------------------------------- real answers of the real app


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock) -> Client:
    """The app on a run with three ready files."""
    add_files(run_dirs, 3)
    config = run_dirs.config(report_back_interval=30.0)
    return await aiohttp_client(create_app(config, clock=clock, watch=False, sweep=False))


async def answer(client: Client, path: str, status: int, **params: Any) -> Any:
    """GET `path`, check the status, and check the body against the document."""
    response = await client.get(path, params=params)
    body = await response.json()
    assert response.status == status, body
    assert response.content_type == "application/json"
    assert_documented(path, status, body)
    return body


async def test_openapi_json_is_served_without_a_token(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs
) -> None:
    app = create_app(run_dirs.config(token="s3cret-token-value"), watch=False, sweep=False)
    client = await aiohttp_client(app)
    assert await answer(client, "/openapi.json", 200) == DOCUMENT
    assert (await client.get("/status")).status == 401


async def test_engine_cycle_answers_match_the_document(client: Client, run_dirs: RunDirs) -> None:
    """assign, keepalive, completed (DONE, repeated, contradicted), and the empty batch."""
    job = await answer(client, "/assignwork", 200, engineid="gpu-01", batchsize=2)
    assert job["batch_size"] == 2
    await answer(client, "/keepalive", 200, job_id=job["jobid"], job_state="PROCESSING")
    await answer(client, "/status", 200)  # with a live job and an engine
    write_outputs(run_dirs, job)
    await answer(client, "/completed", 200, job_id=job["jobid"], job_state="DONE")
    await answer(client, "/completed", 200, job_id=job["jobid"], job_state="DONE")
    await answer(client, "/completed", 409, job_id=job["jobid"], job_state="FAILED")
    await answer(client, "/keepalive", 200, job_id=job["jobid"], job_state="PROCESSING")
    await answer(client, "/assignwork", 200, engineid="gpu-01", batchsize=5)
    empty = await answer(client, "/assignwork", 200, engineid="gpu-01")
    assert empty["jobid"] == "-1"
    status = await answer(client, "/status", 200)
    assert status["throughput"]["eta_s"] is not None


async def test_a_late_done_not_merged_matches_the_document(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """The 200 that a late DONE gets when its files went out again: merged false, detail."""
    add_files(run_dirs, 1)
    app = create_app(
        run_dirs.config(report_back_interval=30.0), clock=clock, watch=False, sweep=False
    )
    client = await aiohttp_client(app)
    job = await answer(client, "/assignwork", 200, engineid="slow", batchsize=1)
    write_outputs(run_dirs, job)
    await app[SWEEPER].sweep_once(clock.advance(31.0))
    await answer(client, "/assignwork", 200, engineid="fast", batchsize=1)
    body = await answer(client, "/completed", 200, job_id=job["jobid"], job_state="DONE")
    assert body["merged"] is False


async def test_other_answers_match_the_document(client: Client) -> None:
    await answer(client, "/heartbeat", 200)
    await answer(client, "/status", 200)  # nothing done yet: eta_s is null
    await answer(client, "/healthz", 200)
    await answer(client, "/readyz", 200)
    client.server.app[REACTOR].ready = False
    await answer(client, "/readyz", 503)


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/assignwork", {}, 400),
        ("/assignwork", {"engineid": "../x"}, 400),
        ("/assignwork", {"engineid": "e", "batchsize": "many"}, 400),
        ("/keepalive", {"job_id": "1", "job_state": "\x01"}, 400),
        ("/keepalive", {"job_id": "x", "job_state": "PROCESSING"}, 400),
        ("/keepalive", {"job_id": "1", "job_state": "PROCESSING"}, 404),
        ("/completed", {"job_id": "1"}, 400),
        ("/completed", {"job_id": "1", "job_state": "DONE"}, 404),
    ],
)
async def test_error_answers_match_the_document(
    client: Client, path: str, params: dict[str, str], status: int
) -> None:
    await answer(client, path, status, **params)


async def test_access_errors_match_the_document(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs
) -> None:
    app = create_app(run_dirs.config(token="s3cret-token-value"), watch=False, sweep=False)
    client = await aiohttp_client(app)
    for path in ["/assignwork", "/keepalive", "/completed", "/heartbeat", "/status"]:
        await answer(client, path, 401)


async def test_method_not_allowed_matches_the_documented_error(client: Client) -> None:
    """405 is not an operation's answer, so the document keeps it in components."""
    response = await client.post("/keepalive")
    assert response.status == 405
    schema_ref = (
        f"{DOC_URI}#/components/responses/MethodNotAllowed/content/application~1json/schema"
    )
    Validator({"$ref": schema_ref}, registry=REGISTRY).validate(await response.json())
