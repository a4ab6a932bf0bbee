"""HTTP handlers: the seed's wire protocol plus status and health endpoints.

All engine verbs are `GET` with query parameters and JSON answers, exactly as the seed
(docs/protocol.md, "Verbs"). One error middleware turns every failure into
`{"error": ..., "detail": ...}` with a 4xx status (503 when the journal cannot write);
anything unexpected is logged and answered 500 without a traceback. Handlers only parse
and validate; the work is done by `Reactor`.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aiohttp import web
from prometheus_client import generate_latest

from reactor.core.names import InvalidName, check_engine_id, check_job_id
from reactor.core.params import RuleError
from reactor.core.protocol import MAX_WAIT_S
from reactor.core.sharing import check_weight
from reactor.core.state import CompletionAction, Job, UnknownJob
from reactor.disk.durable import DurabilityError
from reactor.disk.journal import JournalError
from reactor.serve import page
from reactor.serve.app_keys import CONFIG, FLEET, HOST, SERVED, STREAM
from reactor.serve.host_answers import DEFAULT_PRIORITY, Busy, UnknownRun
from reactor.serve.service import Conflict, StepsLeft
from reactor.serve.stream import Broadcast, TooManyViewers, TopicEnded

if TYPE_CHECKING:  # imported when the service runs in host mode (`create_host_app`)
    from reactor.serve.host import Host

log = structlog.get_logger("reactor.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# On a request: seconds a long-poll held it waiting for work.
HELD_S: web.RequestKey[float] = web.RequestKey("held_s", float)
# Health probes answer without a token, so systemd and load balancers can use them; the
# API's description is public too (it holds no secrets, and clients need it to get one).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
MAX_ENGINE_STATE_LEN = 64
STORAGE_RETRY_FIRST_S = 0.05  # then doubling, up to
STORAGE_RETRY_MAX_S = 1.0
T = TypeVar("T")
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


class ApiError(Exception):
    """An error answered as JSON with the given status."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def _error_response(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.error, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
        if "Allow" in exc.headers:  # a 405 must list the methods it allows (RFC 9110, 15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except DurabilityError as exc:
        return _error_response(503, "storage_failed", str(exc))
    except JournalError as exc:
        log.error("journal_error", path=request.path, detail=str(exc))
        detail = f"{exc}; check that the run folders exist and are writable, then retry"
        return _error_response(503, "storage_unavailable", detail)
    except Exception:
        log.exception("request_failed", path=request.path)
        return _error_response(500, "internal_error", "unexpected error; see the service log")
    finally:
        structlog.contextvars.clear_contextvars()


def _client_allowed(request: web.Request) -> bool:
    config = request.app[CONFIG]
    if not config.allow:
        return True
    remote = request.remote
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or any(address in network for network in config.allow)


def _token_ok(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Allow-list of client networks and bearer token, when configured. The dashboard's
    page and files are open: they hold no data, and the page sends the token for it."""
    if request.path in OPEN_PATHS or page.is_page(request.path):
        return await handler(request)
    if not _client_allowed(request):
        raise ApiError(403, "forbidden", "this client's address is not in the allow list")
    token = request.app[CONFIG].token
    if token is not None and not _token_ok(request, token):
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request latency per route (the route's pattern, so ids do not make new series).
    The time a long-poll request was held waiting for work is not latency: left out."""
    began = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        took = time.perf_counter() - began - request.get(HELD_S, 0.0)
        request.app[SERVED].metrics.request_seconds.labels(route=route).observe(max(took, 0.0))


# ------------------------------------------------------------------ parameters


def _param(request: web.Request, name: str, *, required: bool = True) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "bad_request", f"parameter {name!r} was given {len(values)} times")
    if not values:
        if required:
            raise ApiError(400, "bad_request", f"missing query parameter {name!r}")
        return None
    return values[0]


def _required(request: web.Request, name: str) -> str:
    value = _param(request, name)
    assert value is not None  # noqa: S101 - _param raised otherwise
    return value


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = _param(request, name, required=False)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a whole number, not {text!r}") from None
    if abs(value) > 10**9:
        raise ApiError(400, "bad_request", f"{name} is out of range")
    return value


def _wait_param(request: web.Request) -> float:
    """`wait_s`: how long the engine waits for work when there is none (0 when absent:
    the seed's engines are answered at once), at most MAX_WAIT_S."""
    text = _param(request, "wait_s", required=False)
    if text is None or text == "":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"wait_s must be a number, not {text!r}") from None
    if not 0 <= value <= MAX_WAIT_S:  # NaN fails both
        raise ApiError(400, "bad_request", f"wait_s must be 0 to {MAX_WAIT_S:g} seconds")
    return value


def _flag(request: web.Request, name: str) -> bool:
    """A true/false query parameter (false when absent); 400 for anything else, an
    empty value included."""
    given = _param(request, name, required=False)
    flag = "false" if given is None else given.lower()
    if flag not in TRUE_WORDS | FALSE_WORDS:
        raise ApiError(400, "bad_request", f"{name} must be true or false, not {flag!r}")
    return flag in TRUE_WORDS


def _engine_id(request: web.Request) -> str:
    try:
        engine_id = check_engine_id(_required(request, "engineid"))
    except InvalidName as exc:
        raise ApiError(400, "bad_engineid", str(exc)) from None
    structlog.contextvars.bind_contextvars(engine_id=engine_id)
    return engine_id


def _job_id(request: web.Request) -> str:
    try:
        job_id = check_job_id(_required(request, "job_id"))
    except InvalidName as exc:
        raise ApiError(400, "bad_job_id", str(exc)) from None
    structlog.contextvars.bind_contextvars(job_id=job_id)
    return job_id


def _job_state(request: web.Request) -> str:
    job_state = _required(request, "job_state")
    if not job_state or len(job_state) > MAX_ENGINE_STATE_LEN or not job_state.isprintable():
        detail = f"job_state must be 1-{MAX_ENGINE_STATE_LEN} printable characters, e.g. DONE"
        raise ApiError(400, "bad_job_state", detail)
    return job_state


def _unknown_job(job_id: str) -> ApiError:
    return ApiError(404, "unknown_job", f"job {job_id} was never handed out by this run")


# -------------------------------------------------------------------- handlers


def _assignment_body(job: Job | None, lease_s: float, folders: tuple[str, str]) -> dict[str, Any]:
    """The seed's BCBatch fields; an empty batch has jobid "-1" and batch_size 0."""
    if job is None:
        return {
            "jobid": "-1",
            "job_input_dir": "",
            "job_output_dir": "",
            "bc_engine_id": "",
            "batch_size": 0,
            "batch": [],
            "report_back_period": lease_s,
            "report_back_interval": lease_s,
        }
    return {
        "jobid": job.job_id,
        "job_input_dir": folders[0],
        "job_output_dir": folders[1],
        "bc_engine_id": job.engine_id,
        "batch_size": len(job.files),
        "batch": list(job.files),
        "report_back_period": lease_s,
        "report_back_interval": lease_s,
    }


async def _riding_out_storage(request: web.Request, operation: Callable[[], Awaitable[T]]) -> T:
    """Run a journal operation, and run it again while the disk refuses it, for up to
    `storage_grace` seconds: every journal step is safe to retry (a retry carries on
    from the last step that reached the disk), and the loop serves other requests
    meanwhile. Seed engines treat a 503 as fatal, so a short hiccup is ridden out here."""
    grace_s = request.app[CONFIG].storage_grace
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    delay_s = STORAGE_RETRY_FIRST_S
    attempt = 1
    while True:
        try:
            result = await operation()
        except DurabilityError:
            raise  # never retried: the service is stopping
        except (JournalError, StepsLeft) as exc:
            if loop.time() + delay_s > deadline:
                raise
            if attempt == 1:
                log.warning("storage_retry", path=request.path, detail=str(exc), grace_s=grace_s)
            await asyncio.sleep(delay_s)
            delay_s = min(2 * delay_s, STORAGE_RETRY_MAX_S)
            attempt += 1
            continue
        if attempt > 1:
            log.info("storage_recovered", path=request.path, attempts=attempt)
        return result


async def assignwork(request: web.Request) -> web.Response:
    engine_id = _engine_id(request)
    batch_size = _int_param(request, "batchsize", 0)
    takes_params = _flag(request, "params")
    wait_s = _wait_param(request)
    reactor = request.app[SERVED]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        looked = reactor.waiters.notified
        job = await _riding_out_storage(
            request, lambda: reactor.assign(engine_id, batch_size, takes_params=takes_params)
        )
        if job is not None or wait_s == 0:
            break
        came = reactor.waiters.notified != looked  # work came while it looked: again
        if not came:
            began = loop.time()
            woken = await reactor.waiters.wait(deadline - loop.time())
            request[HELD_S] = request.get(HELD_S, 0.0) + loop.time() - began
            if not woken:
                break
        # aiohttp does not cancel a handler whose client hung up: an engine gone while it
        # waited is given nothing (a job it never hears of would wait out its lease)
        if request.transport is None or request.transport.is_closing():
            break
    folders = ("", "") if job is None else reactor.folders_of(job)
    lease_s = request.app[CONFIG].report_back_interval
    body = _assignment_body(job, lease_s, folders)
    if takes_params:  # only to an engine that asked: a seed engine gets the seed's fields
        body["params"] = {} if job is None else reactor.params_of(job)
    return web.json_response(body)


async def keepalive(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    job_state = _job_state(request)
    try:
        late = request.app[SERVED].keepalive(job_id, job_state)
    except UnknownJob:
        raise _unknown_job(job_id) from None
    return web.json_response({"late": late})


async def completed(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    job_state = _job_state(request)
    reactor = request.app[SERVED]
    try:
        plan = await _riding_out_storage(request, lambda: reactor.complete(job_id, job_state))
    except UnknownJob:
        raise _unknown_job(job_id) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except StepsLeft as left:
        # Decided: the engine's report is taken. What is left on disk is held for a
        # person (and tried again), not the engine's to wait for.
        reactor.hold_for_good(job_id)
        plan = left.plan
    if plan.action in (CompletionAction.LATE_NOT_MERGED, CompletionAction.REFUSE):
        # Nothing merged: a late DONE whose files went to another engine, or outputs
        # that break the rules. A 2xx that says so, since a seed engine exits on any
        # other answer, and the run is better served by its next batch than its exit.
        return web.json_response({"ok": True, "merged": False, "detail": plan.reason})
    return web.json_response({"ok": True})


async def requeue(request: web.Request) -> web.Response:
    """Release quarantined files: `?folder=FAILED_…` (repeatable) and/or `?all=true`;
    with neither, nothing is released."""
    folders = request.query.getall("folder", [])
    everything = _flag(request, "all")
    reactor = request.app[SERVED]
    try:
        released = await _riding_out_storage(
            request, lambda: reactor.requeue(None if everything else folders)
        )
    except KeyError as exc:
        detail = f"no quarantine folder named {exc.args[0]!r} in the input folder"
        raise ApiError(404, "unknown_folder", detail) from None
    return web.json_response({"released": released})


def _host(request: web.Request) -> Host:
    host = request.app.get(HOST)
    if host is None:
        detail = "this service serves one run (input_dir); runs are managed in host mode only"
        raise ApiError(404, "not_host_mode", detail)
    return host


async def run_add(request: web.Request) -> web.Response:
    """Serve a run the adoption rule left (older than adopt_since), or try again one
    that failed to start: `?run=` its name (`PAW12345_fd97ea7b`) or folder."""
    host = _host(request)
    name = _run_name(request)
    try:
        outcome = await host.add(name)
    except UnknownRun:
        raise _unknown_run(name) from None
    key = host.find(name)
    return web.json_response({"run": str(key), "outcome": outcome})


async def run_prioritise(request: web.Request) -> web.Response:
    """`?run=NAME&weight=W`: the run takes W files for each of a weight-1 run's."""
    host = _host(request)
    name = _run_name(request)
    raw = _param(request, "weight", required=False) or str(DEFAULT_PRIORITY)
    try:
        weight = check_weight(float(raw))
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"weight {raw!r}: {exc}") from None
    try:
        key = host.prioritise(name, weight)
    except UnknownRun:
        raise _unknown_run(name) from None
    return web.json_response({"run": str(key), "weight": weight})


MAX_RUN_NAME = 400  # a run's name, or its folder (a request line stays under 8 KiB)


def _run_name(request: web.Request) -> str:
    name = _required(request, "run")
    if len(name) > MAX_RUN_NAME:
        detail = f"run is {len(name)} characters long; the limit is {MAX_RUN_NAME}"
        raise ApiError(400, "bad_request", detail)
    return name


async def run_close(request: web.Request) -> web.Response:
    """`?run=NAME&reason=…`: end the run now, with what is done (a stalled run, say)."""
    host = _host(request)
    name = _run_name(request)
    reason = _param(request, "reason", required=False) or "closed by hand"
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise ApiError(400, "bad_request", f"reason must be printable, at most {MAX_REASON}")
    try:
        key, closed = host.close(name, reason)
    except UnknownRun:
        raise _unknown_run(name) from None
    return web.json_response({"run": str(key), "closed": closed})


MAX_REASON = 200


async def run_params(request: web.Request) -> web.Response:
    """`?run=NAME&set=model=sup` (repeatable), `&rebasecall=true` once the run's
    parameters are pinned: a person's change, recorded with the run."""
    host = _host(request)
    name = _run_name(request)
    values: dict[str, str] = {}
    for item in request.query.getall("set", []):
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise ApiError(400, "bad_request", f"set {item!r}: write key=value, such as model=sup")
        values[field.strip()] = value.strip()
    if not values:
        raise ApiError(400, "bad_request", "give at least one set=key=value")
    rebasecall = _flag(request, "rebasecall")
    try:
        run, params, changed = await host.set_params(name, values, rebasecall=rebasecall)
    except UnknownRun:
        raise _unknown_run(name) from None
    except Busy as busy:
        raise ApiError(409, "conflict", busy.detail) from None
    except RuleError as exc:
        raise ApiError(400, "bad_request", str(exc).replace("rule 1: ", "")) from None
    if not changed:
        detail = (
            f"the parameters of {run} are pinned (files were handed out with them): to "
            "change them, say rebasecall=true (reactor run params --rebasecall); files "
            "still to do get the new ones, files done keep the old outputs"
        )
        raise ApiError(409, "conflict", detail)
    return web.json_response({"run": str(run), "params": params})


def _unknown_run(name: str) -> ApiError:
    detail = (
        f"no run {name!r} under the roots: give its name as /status lists it "
        "(flow cell and protocol run, such as PAW12345_fd97ea7b) or its folder"
    )
    return ApiError(404, "unknown_run", detail)


async def heartbeat(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVED].heartbeat())


def status_body(app: web.Application, run: str | None) -> dict[str, Any]:
    """What `/status` answers: the whole service, or (host mode) one run in detail.
    Raises UnknownRun for a run no longer served."""
    if run is not None:
        host = app.get(HOST)
        if host is None:
            raise UnknownRun(run)
        return host.run_status(run)
    body = app[SERVED].status()
    if FLEET in app:
        body["fleet"] = app[FLEET].view()
    return body


def _status_run(request: web.Request) -> str | None:
    """`?run=NAME` (host mode): the served run's name as /status lists it, or None."""
    if _param(request, "run", required=False) is None:
        return None
    host = _host(request)
    name = _run_name(request)
    try:
        key = host.find(name)
    except UnknownRun:
        raise _unknown_run(name) from None
    if key not in host.units:
        detail = f"run {key} is not served now (finished, left or failed: see /status)"
        raise ApiError(404, "unknown_run", detail)
    return str(key)


async def status(request: web.Request) -> web.Response:
    run = _status_run(request)
    try:
        body = status_body(request.app, run)
    except UnknownRun:
        raise _unknown_run(run or "") from None
    return web.json_response(body)


def frame_of(body: dict[str, Any]) -> bytes:
    """One line of `/status/stream`: compact JSON and a newline."""
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def new_broadcast(app: web.Application, **options: Any) -> Broadcast:
    """The stream's producers, building each frame from `status_body` (see
    `reactor.serve.stream`); `options` are Broadcast's (tests drive the ticks)."""

    def build(run: str | None) -> bytes:
        try:
            return frame_of(status_body(app, run))
        except UnknownRun:
            error = _unknown_run(run or "")
            raise TopicEnded(frame_of({"error": error.error, "detail": error.detail})) from None

    return Broadcast(build, **options)


STREAM_HEADERS = {
    "Content-Type": "application/x-ndjson",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


async def status_stream(request: web.Request) -> web.StreamResponse:
    """`/status` as it changes: one JSON line per frame, a frame per tick at most, until
    the client goes or the service stops. The time spent streaming is not latency."""
    run = _status_run(request)
    broadcast = request.app[STREAM]
    try:
        viewer = broadcast.subscribe(run)
    except TooManyViewers as exc:
        raise ApiError(503, "too_many_viewers", str(exc)) from None
    began = time.perf_counter()
    response = web.StreamResponse(headers=STREAM_HEADERS)
    try:
        await response.prepare(request)
        while (frame := await viewer.next()) is not None:
            await response.write(frame)
            if request.transport is None or request.transport.is_closing():
                break  # the viewer went: dropped now, at no further cost
    except ConnectionError:
        pass  # the viewer went while a frame was being written
    finally:
        broadcast.unsubscribe(run, viewer)
        request[HELD_S] = time.perf_counter() - began
    return response


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = generate_latest(request.app[SERVED].metrics.registry)
    response = web.Response(body=body)
    response.content_type = "text/plain"
    response.charset = "utf-8"
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    reactor = request.app[SERVED]
    if reactor.scanning:
        detail = "start-up scan of the input folder in progress; work is handed out already"
        return _error_response(503, "not_ready", detail)
    if not reactor.ready:
        return _error_response(503, "not_ready", "recovery or shutdown in progress")
    return web.json_response({"status": "ready"})


@functools.cache
def openapi_document() -> bytes:
    """The OpenAPI 3.1 description of this API, shipped in the package as `openapi.json`."""
    return resources.files("reactor.serve").joinpath("openapi.json").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    openapi_document()  # read once at start, never inside a request
    app.router.add_get("/assignwork", assignwork)
    app.router.add_get("/keepalive", keepalive)
    app.router.add_get("/completed", completed)
    app.router.add_get("/heartbeat", heartbeat)
    app.router.add_post("/requeue", requeue)
    app.router.add_get("/status", status)
    # No HEAD: a stream has no end for aiohttp to wait for before it answers one.
    app.router.add_get("/status/stream", status_stream, allow_head=False)
    app.router.add_post("/runs/add", run_add)
    app.router.add_post("/runs/prioritise", run_prioritise)
    app.router.add_post("/runs/close", run_close)
    app.router.add_post("/runs/params", run_params)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)
    page.add_routes(app)
