"""The engine's side of the wire protocol: `EngineClient`, with its retry policy.

Three verbs, all `GET` with query parameters (docs/protocol.md, "Verbs"):
`assignwork()`, `keepalive()`, `completed()`. A manager that is briefly away is ridden
out: connection errors, timeouts and 5xx answers are retried with back-off (from the
first wait up to `retry_max_s`) until `grace_s` have passed since the first failure of
that call; then `ManagerUnavailable` is raised. 4xx answers are the manager's word and
are not retried: `ManagerRefused` carries the status. An answer that is not the JSON
the protocol promises raises `BadAnswer`.

The pure parts (`backoff_delay`, `parse_assignment`) take no I/O and no clock.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from reactor.core.model import Clock
from reactor.core.protocol import error_detail

# Lazy, as in the other modules: the real logger is made at first use, after
# configure_logging.
log = structlog.get_logger("reactor.engine")

Sleep = Callable[[float], Awaitable[None]]
REQUEST_TIMEOUT_S = 30.0
MIN_REQUEST_TIMEOUT_S = 5.0
# A job id and the job folders become paths and arguments here: one plain name each,
# never a separator, never a leading dot (the manager's own rule is stricter).
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
MAX_JOB_PATH_PARTS = 16


class ManagerError(Exception):
    """The manager could not be used for this call."""


class ManagerUnavailable(ManagerError):
    """No usable answer (connection errors, timeouts, 5xx) for `grace` seconds."""


class ManagerRefused(ManagerError):
    """A 4xx answer: not retried."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class BadAnswer(ManagerError):
    """A 2xx answer that is not what the protocol promises."""


class _Retryable(Exception):
    """Internal: a failure worth another try."""


def backoff_delay(attempt: int, first_s: float, max_s: float) -> float:
    """Wait before try `attempt + 1` (attempt 0 waits `first_s`): doubling, at most `max_s`."""
    if attempt >= 64:  # 2**64 * anything is past any sane maximum
        return max_s
    return min(first_s * 2.0 ** max(attempt, 0), max_s)


@dataclass(frozen=True, slots=True)
class Assignment:
    """An /assignwork answer. Folders are relative to the run's INPUTDIR / OUTPUTDIR."""

    job_id: str
    job_input_dir: str
    job_output_dir: str
    batch: tuple[str, ...]
    report_back_interval_s: float
    # The run's basecall parameters, from a manager in host mode (reactor asks for them)
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.batch

    @property
    def keepalive_period_s(self) -> float:
        """The seed's rhythm: a keepalive every half of the lease."""
        return self.report_back_interval_s / 2


EMPTY = Assignment("-1", "", "", (), 0.0)


def _field(answer: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = answer.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        msg = f"/assignwork answer has no usable {name!r} ({value!r})"
        raise BadAnswer(msg)
    return value


def _safe_path(answer: Mapping[str, Any], name: str) -> str:
    """A job folder: one plain name (a single run's manager), or plain names joined by
    `/` below the manager's root (host mode: `{group}/{sample}/{run}/reactor/…`); never
    absolute, never `..`, nothing hidden."""
    value: str = _field(answer, name, str)
    parts = value.split("/")
    if len(parts) > MAX_JOB_PATH_PARTS or not all(_SAFE_NAME.fullmatch(p) for p in parts):
        msg = f"/assignwork answer has {name} {value!r}, which is not a path of plain names"
        raise BadAnswer(msg)
    return value


def _safe_name(answer: Mapping[str, Any], name: str) -> str:
    value: str = _field(answer, name, str)
    if _SAFE_NAME.fullmatch(value) is None:
        msg = f"/assignwork answer has {name} {value!r}, which is not one plain name"
        raise BadAnswer(msg)
    return value


def parse_assignment(answer: object) -> Assignment:
    """Check an /assignwork answer; EMPTY when there is nothing to do. Raises BadAnswer."""
    if not isinstance(answer, dict):
        msg = f"/assignwork answer is not a JSON object: {answer!r:.200}"
        raise BadAnswer(msg)
    batch = answer.get("batch")
    if not batch or answer.get("batch_size") == 0 or str(answer.get("jobid")) == "-1":
        return EMPTY
    if not isinstance(batch, list) or not all(isinstance(name, str) for name in batch):
        msg = f"/assignwork answer has a batch that is not a list of names: {batch!r:.200}"
        raise BadAnswer(msg)
    interval_s = float(_field(answer, "report_back_interval", (int, float)))
    if not 0 < interval_s < float("inf"):
        msg = f"/assignwork answer has report_back_interval {interval_s!r}; it must be positive"
        raise BadAnswer(msg)
    return Assignment(
        job_id=_safe_name(answer, "jobid"),
        job_input_dir=_safe_path(answer, "job_input_dir"),
        job_output_dir=_safe_path(answer, "job_output_dir"),
        batch=tuple(batch),
        report_back_interval_s=interval_s,
        params=_params(answer.get("params", {})),
    )


def _params(raw: object) -> dict[str, str]:
    """The run's parameters: short printable text values, or the answer is refused."""
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.isprintable() and len(v) <= 200
        for k, v in raw.items()
    ):
        msg = f"/assignwork answer has params that are not short texts: {raw!r:.200}"
        raise BadAnswer(msg)
    params = {str(k): str(v) for k, v in raw.items()}
    if "sample_sheet" in params:  # a path below the root: plain names only, as folders
        _safe_path(params, "sample_sheet")
    return params


class EngineClient:
    """The three verbs over one aiohttp session, with the retry policy above."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        manager: str,
        *,
        engine_id: str,
        grace_s: float,
        retry_first_s: float,
        retry_max_s: float,
        token: str | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.session = session
        self.base = manager.rstrip("/")
        self.engine_id = engine_id
        self.grace_s = grace_s
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.clock = clock
        self.sleep = sleep

    async def assignwork(self, batch_size: int, wait_s: float = 0.0) -> Assignment:
        """The next batch; with `wait_s`, a manager that can (reactor serve) holds the
        request until work comes or that long passes (a seed manager answers at once)."""
        # params=true: this engine can be told a run's basecall parameters (a seed
        # manager ignores the parameter, and wait_s)
        params = {"engineid": self.engine_id, "batchsize": str(batch_size), "params": "true"}
        if wait_s > 0:
            params["wait_s"] = f"{wait_s:g}"
        answer = await self._get("assignwork", params, held_s=wait_s)
        return parse_assignment(answer)

    async def keepalive(self, job_id: str, job_state: str = "PROCESSING") -> bool:
        """True when the manager says the job is late (expired or ended): stop it."""
        answer = await self._get("keepalive", {"job_id": job_id, "job_state": job_state})
        if not isinstance(answer, dict) or not isinstance(answer.get("late"), bool):
            msg = f"/keepalive answer has no boolean 'late': {answer!r:.200}"
            raise BadAnswer(msg)
        return bool(answer["late"])

    async def completed(self, job_id: str, job_state: str) -> str | None:
        """Report the job's end; the manager's word when it did not merge a DONE (a late
        DONE whose files went to another engine meanwhile), else None."""
        answer = await self._get("completed", {"job_id": job_id, "job_state": job_state})
        if isinstance(answer, dict) and answer.get("merged") is False:
            return str(answer.get("detail") or "not merged")
        return None

    async def _get(self, verb: str, params: dict[str, str], held_s: float = 0.0) -> object:
        """One verb, retried while the manager is away, for at most `grace_s` (plus
        `held_s`, the time the manager may hold it: a long-poll)."""
        started = self.clock()
        deadline = started + self.grace_s + held_s
        attempt = 0
        while True:
            try:
                answer = await self._get_once(verb, params, deadline, held_s)
            except _Retryable as exc:
                now = self.clock()
                if now >= deadline:
                    log.error(
                        "manager_unavailable", verb=verb, attempts=attempt + 1, detail=str(exc)
                    )
                    msg = f"no answer to /{verb} for {now - started:.0f} s: {exc}"
                    raise ManagerUnavailable(msg) from None
                delay_s = min(
                    backoff_delay(attempt, self.retry_first_s, self.retry_max_s), deadline - now
                )
                level = log.warning if attempt == 0 else log.debug
                level(
                    "manager_unreachable",
                    verb=verb,
                    attempt=attempt + 1,
                    detail=str(exc),
                    retry_in_s=round(delay_s, 3),
                )
                attempt += 1
                await self.sleep(delay_s)
                continue
            if attempt:
                log.info(
                    "manager_reachable",
                    verb=verb,
                    attempts=attempt + 1,
                    duration_s=round(self.clock() - started, 3),
                )
            return answer

    async def _get_once(
        self, verb: str, params: dict[str, str], deadline: float, held_s: float = 0.0
    ) -> object:
        # Never wait on one request much past the grace: the caller has other work.
        left = deadline - self.clock()
        timeout = aiohttp.ClientTimeout(
            total=max(MIN_REQUEST_TIMEOUT_S, min(REQUEST_TIMEOUT_S + held_s, left))
        )
        try:
            async with self.session.get(
                f"{self.base}/{verb}", params=params, headers=self.headers, timeout=timeout
            ) as reply:
                if reply.status >= 500:
                    msg = f"HTTP {reply.status}"
                    raise _Retryable(msg)
                body = await reply.text()
                if reply.status >= 400:
                    raise ManagerRefused(reply.status, error_detail(body) or str(reply.reason))
                if reply.status >= 300:
                    msg = f"/{verb} answered HTTP {reply.status}; check the manager URL"
                    raise BadAnswer(msg)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise _Retryable(str(exc) or type(exc).__name__) from None
        except aiohttp.ClientError as exc:  # redirect loops and the like: not the network
            msg = f"/{verb} failed: {exc or type(exc).__name__}"
            raise BadAnswer(msg) from None
        return _json(verb, body)


def _json(verb: str, body: str) -> object:
    try:
        return json.loads(body)
    except ValueError:
        msg = f"/{verb} answer is not JSON: {body[:200]!r}"
        raise BadAnswer(msg) from None
