"""Hostile requests against a real `reactor serve` on 127.0.0.1.

One server process serves the whole module, on a run of real `.pod5` files with a short
lease, so jobs are handed out, expire and go back to the queue while requests arrive:

- explicit hostile requests, sent byte for byte with `http.client`: path traversal (plain
  and percent-encoded), NUL and control characters, non-ASCII look-alikes, oversized and
  malformed numbers, repeated and missing parameters, other engines' jobs;
- fuzzing driven by `reactor/openapi.json` with schemathesis: every operation with
  schema-valid and schema-invalid parameters, then a stateful run that follows the
  document's links (a job id from /assignwork into /keepalive and /completed).
  Schemathesis' own checks hold each answer to the document (status, content type, body
  schema, `Allow` on 405, valid data accepted, invalid data rejected).

Every answer is also held to the service's promises to a hostile client (docs/protocol.md,
"Security"): no 5xx, a JSON body without a traceback, nothing created outside the run
folders, only reactor's own names inside them. The last tests check the service still
serves a normal engine cycle and logged no unexpected error.

Budget: about 300 generated requests and a few seconds, with derandomized inputs so CI is
repeatable. `REACTOR_FUZZ_EXAMPLES=500 pytest tests/system/test_fuzz.py` runs a longer
fuzz on fresh random inputs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from reactor.core.names import INPUT_FOLDERS, STAGING_PREFIX, is_pod5_name, parse_job_folder
from reactor.serve.page import assets
from tests.support.launch import serve_args
from tests.support.pod5files import write_pod5
from tests.support.served import wait_for

N_FILES = 200
# The only answers that are not JSON or Prometheus text: the dashboard's files, exactly.
DASHBOARD_FILES = frozenset(asset.body for asset in assets().values())
STATE_FOLDER = ".reactor"  # reactor's own records, in OUTPUTDIR
# Short, so jobs the fuzz takes expire and their files come back while it runs; long
# enough that an assign followed at once by a keepalive is never late.
LEASE_S = 2.0
# Per operation; the coverage phase adds its boundary cases on top (about 200 requests in all).
EXAMPLES = int(os.environ.get("REACTOR_FUZZ_EXAMPLES", "0")) or 15
STATEFUL_SCENARIOS = max(EXAMPLES // 2, 6)
REPEATABLE = "REACTOR_FUZZ_EXAMPLES" not in os.environ


# ------------------------------------------------------------------ the server


@dataclass
class Answer:
    status: int
    content_type: str  # as sent, parameters included
    body: bytes

    @property
    def media_type(self) -> str:
        return self.content_type.split(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ServedRun:
    """A `reactor serve` process on loopback, its run folders, and the promises it keeps."""

    root: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    requests: Counter[str] = field(default_factory=Counter)
    outside_before: frozenset[str] = frozenset()

    @property
    def input_dir(self) -> Path:
        return self.root / "run" / "input"

    @property
    def output_dir(self) -> Path:
        return self.root / "run" / "output"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    *serve_args(
                        self.input_dir,
                        self.output_dir,
                        self.port,
                        report_back_interval=LEASE_S,
                        batch_size=2,
                        sweep_interval=0.2,
                        settle_seconds=0.5,
                        log_format="json",
                    ),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                # A path that escaped as a relative one would land here: watched too.
                cwd=self.root / "cwd",
            )  # fmt: skip
        wait_for(self.ready, 30, "the server to be ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"server exited; see {self.log_path}"
        try:
            return self.get("/readyz", check=False).status == 200
        except OSError:
            return False

    # -------------------------------------------------------------- requests

    def get(self, target: str, method: str = "GET", *, check: bool = True) -> Answer:
        """Send `target` exactly as written (already percent-encoded) and check the answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.putrequest(method, target, skip_accept_encoding=True)
            connection.endheaders()
            reply = connection.getresponse()
            answer = Answer(reply.status, reply.getheader("Content-Type", ""), reply.read())
        finally:
            connection.close()
        if check:
            self.requests["explicit"] += 1
            self.check(answer, head=method == "HEAD")
        return answer

    def query(self, path: str, **params: str) -> Answer:
        return self.get(f"{path}?{urllib.parse.urlencode(params)}")

    # -------------------------------------------------------------- promises

    def outside_tree(self) -> frozenset[str]:
        """Every path under the test's root except inside INPUTDIR and OUTPUTDIR."""
        found = set()
        run_dirs = {self.input_dir, self.output_dir}
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            dirs[:] = [d for d in dirs if here / d not in run_dirs]
            found.update(str(here / name) for name in dirs + files)
        return frozenset(found)

    def foreign_names(self) -> list[str]:
        """Names directly in the run folders that reactor would not have made."""
        foreign = []
        for name in os.listdir(self.input_dir):
            job = parse_job_folder(name)
            if not (
                is_pod5_name(name)
                or (job is not None and job.kind in INPUT_FOLDERS)
                or name.startswith(STAGING_PREFIX)
            ):
                foreign.append(f"input/{name}")
        for name in os.listdir(self.output_dir):
            job = parse_job_folder(name)
            if not (
                name in {"pass", "fail", STATE_FOLDER}
                or (job is not None and job.kind not in INPUT_FOLDERS)
                or name.startswith(STAGING_PREFIX)
            ):
                foreign.append(f"output/{name}")
        return foreign

    def check(self, answer: Answer, *, head: bool = False) -> None:
        """The promises every answer keeps, whatever was asked."""
        assert answer.status < 500, answer
        if head:
            pass
        elif answer.status == 200 and answer.body in DASHBOARD_FILES:
            pass  # the dashboard's page and files (HTML, JavaScript, CSS, a licence)
        elif answer.status == 200 and answer.media_type == "text/plain":
            # only /metrics answers text: the Prometheus format, nothing else
            assert answer.body.startswith(b"# HELP reactor_"), answer
            assert b"Traceback" not in answer.body, answer
        else:
            assert answer.media_type == "application/json", answer
            body = answer.json()  # raises on anything that is not JSON
            assert b"Traceback" not in answer.body, answer
            if answer.status >= 400:
                assert set(body) == {"error", "detail"}, body
        assert self.outside_tree() == self.outside_before, "something was created outside"
        assert self.foreign_names() == []

    def links_stay_inside(self) -> None:
        """Every symlink in a job folder points at a `.pod5` directly in INPUTDIR."""
        for folder in self.input_dir.iterdir():
            try:
                links = [entry for entry in folder.iterdir() if entry.is_symlink()]
            except (FileNotFoundError, NotADirectoryError):
                continue  # a .pod5, or a job folder the sweeper just retired
            for link in links:
                target = link.resolve()
                assert target.parent == self.input_dir.resolve(), (link, target)
                assert is_pod5_name(target.name), link

    def server_log(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedRun]:
    root = tmp_path_factory.mktemp("hostile")
    logs = tmp_path_factory.mktemp("hostile-logs")
    run = ServedRun(root=root, port=free_port(), log_path=logs / "server.jsonl")
    (root / "cwd").mkdir()
    run.input_dir.mkdir(parents=True)
    run.output_dir.mkdir()
    add_pod5_files(run, range(N_FILES))
    run.start()
    run.outside_before = run.outside_tree()
    try:
        yield run
    finally:
        run.stop()


def add_pod5_files(run: ServedRun, numbers: range) -> list[str]:
    """Copies of one real `.pod5`, moved into INPUTDIR whole (as a finished file)."""
    template = run.root / "cwd" / "template.pod5"
    if not template.exists():
        write_pod5(template, n_reads=1, seed=0)
    names = []
    for i in numbers:
        name = f"PAK00000_pass_abcdef12_0123abcd_{i}.pod5"
        staged = run.root / "run" / f"{name}.partial"
        shutil.copyfile(template, staged)
        staged.rename(run.input_dir / name)
        names.append(name)
    return names


def take_a_job(run: ServedRun, engine_id: str) -> dict[str, Any]:
    """Poll /assignwork (bounded) until the engine gets a non-empty batch."""
    jobs: list[dict[str, Any]] = []

    def got_one() -> bool:
        body = run.query("/assignwork", engineid=engine_id, batchsize="1").json()
        jobs.append(body)
        return bool(body["batch"])

    wait_for(got_one, 20, f"a batch for {engine_id}")
    return jobs[-1]


# ------------------------------------------------------- explicit hostile requests


HOSTILE_ENGINE_IDS = [
    "%2E%2E%2F%2E%2E%2Fetc",  # ../../etc, percent-encoded
    "..%2F..%2Ftmp",
    "%252E%252E%252Fetc",  # double-encoded: arrives as %2E%2E%2Fetc
    "..%5C..%5Cwindows",  # backslashes
    "%2Fetc%2Fpasswd",  # absolute
    "gpu%2F",
    "%2E",
    "gpu%00",  # NUL at the end
    "%09gpu",  # tab
    "gpu%0D%0AX-Injected%3A%201",  # CR LF
    "%1B%5B31mred",  # terminal escape
    "gpu%7F",  # DEL
    "gpu%C2%85",  # NEL (C1 control)
    "%EF%BD%87%EF%BD%90%EF%BD%95",  # fullwidth "gpu"
    "gpu%E2%80%AE",  # right-to-left override
    "e%CC%81",  # e + combining acute
    "%C2%A0gpu",  # no-break space
    "%C3%28",  # invalid UTF-8
    "-gpu",
    "_gpu",
    "x" * 65,
]


@pytest.mark.parametrize("engine_id", HOSTILE_ENGINE_IDS)
def test_hostile_engineid_is_rejected(served: ServedRun, engine_id: str) -> None:
    """Traversal (also percent-encoded), control and look-alike characters: 400, no folder."""
    answer = served.get(f"/assignwork?engineid={engine_id}&batchsize=1")
    assert answer.status == 400, answer
    assert answer.json()["error"] == "bad_engineid"


def test_longest_engineid_is_taken(served: ServedRun) -> None:
    """64 characters is the limit, not one less."""
    engine_id = "g" + "x" * 63
    body = served.query("/assignwork", engineid=engine_id, batchsize="1").json()
    assert body["batch"] == [] or body["bc_engine_id"] == engine_id


@pytest.mark.parametrize(
    "job_id",
    [
        "%2E%2E%2F%2E%2E%2Fetc", "1%2F..", "1%00", "%EF%BC%91", "%D9%A3",
        "9" * 41, "%201", "1%20", "%2B1", "0x1", "1e3", "",
    ],
)  # fmt: skip
def test_hostile_job_id_is_rejected(served: ServedRun, job_id: str) -> None:
    """Only 1-40 ASCII digits are a job id: no traversal, no Unicode digits, no signs."""
    for verb in ["/keepalive", "/completed"]:
        answer = served.get(f"{verb}?job_id={job_id}&job_state=DONE")
        assert answer.status == 400, answer
        assert answer.json()["error"] == "bad_job_id"


@pytest.mark.parametrize(
    "job_state", ["DONE%0A", "%1B%5B2J", "DONE%00", "%E2%80%AE", "%C2%85", "", "y" * 65]
)
def test_hostile_job_state_is_rejected(served: ServedRun, job_state: str) -> None:
    for verb in ["/keepalive", "/completed"]:
        answer = served.get(f"{verb}?job_id=12345&job_state={job_state}")
        assert answer.status == 400, answer
        assert answer.json()["error"] == "bad_job_state"


@pytest.mark.parametrize(
    ("batchsize", "status"),
    [
        ("1000000000", 200), ("-1000000000", 200), ("1000000001", 400), ("-1000000001", 400),
        ("9" * 5000, 400), ("-" + "9" * 5000, 400), ("1e3", 400), ("0x10", 400), ("NaN", 400),
        ("inf", 400), ("1.0", 400), ("%00", 400), ("%2E%2E%2F", 400),
    ],
)  # fmt: skip
def test_huge_negative_and_malformed_batchsize(
    served: ServedRun, batchsize: str, status: int
) -> None:
    """Within ±10^9 a batchsize is taken (<= 0 means the default); beyond, or not a whole
    number (4,300+ digits included: Python refuses to parse those), it is a 400."""
    answer = served.get(f"/assignwork?engineid=batchsize-probe&batchsize={batchsize}")
    assert answer.status == status, answer


@pytest.mark.parametrize(
    "target",
    [
        "/keepalive?job_id=1&job_id=2&job_state=PROCESSING",
        "/keepalive?job_id=1&job_state=PROCESSING&job_state=DONE",
        "/completed?job_id=1&job_id=1&job_state=DONE",
        "/assignwork?engineid=e&batchsize=1&batchsize=2",
        "/assignwork?engineid=e&engineid=e",
        "/assignwork?engineid=e&engineid=",
    ],
)
def test_repeated_parameter_is_rejected(served: ServedRun, target: str) -> None:
    """A parameter given twice is ambiguous, even with the same value: 400, nothing done."""
    answer = served.get(target)
    assert answer.status == 400, answer
    assert "2 times" in answer.json()["detail"]


@pytest.mark.parametrize(
    "target",
    [
        "/completed",
        "/completed?job_state=DONE",
        "/keepalive?job_state=PROCESSING",
        "/assignwork?batchsize=1",
        "/assignwork?=&&&=e",
        "/assignwork?ENGINEID=e",
    ],
)
def test_missing_parameter_is_rejected(served: ServedRun, target: str) -> None:
    answer = served.get(target)
    assert answer.status == 400, answer
    assert "missing" in answer.json()["detail"]


@pytest.mark.parametrize(
    "target",
    [
        "/%2e%2e/%2e%2e/etc/passwd",
        "/assignwork/..%2F..%2Fstatus",
        "/assignwork%2F..%2Fstatus",
        "/..%2Fassignwork?engineid=e",
        "/openapi.json/..%2F..%2Freactor%2Fapi.py",
        "/static/..%252F..%252Fetc%252Fpasswd",
        "//assignwork?engineid=e",
        "/assignwork;engineid=e",
    ],
)
def test_traversal_in_the_path_finds_nothing(served: ServedRun, target: str) -> None:
    """No route serves files; odd paths are a JSON 404."""
    answer = served.get(target)
    assert answer.status == 404, answer


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods_get_405_with_allow(served: ServedRun, method: str) -> None:
    """RFC 9110: a 405 lists the methods the resource allows."""
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        connection.request(method, "/completed?job_id=1&job_state=DONE")
        reply = connection.getresponse()
        answer = Answer(reply.status, reply.getheader("Content-Type", ""), reply.read())
        allow = reply.getheader("Allow", "")
    finally:
        connection.close()
    served.check(answer)
    assert answer.status == 405
    assert {m.strip() for m in allow.split(",")} == {"GET", "HEAD"}


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /assignwork?engineid=a\x00b HTTP/1.1",  # raw NUL, not percent-encoded
        b"GET /assignwork?engineid=\xc3\xa9 HTTP/1.1",  # raw UTF-8 bytes
        b"GET /assignwork?engineid=" + b"x" * 9000 + b" HTTP/1.1",  # longer than 8190
        b"FOO /status HTTP/1.1",
    ],
)
def test_malformed_http_is_refused_and_the_server_carries_on(
    served: ServedRun, request_line: bytes
) -> None:
    """Requests HTTP itself forbids are refused by aiohttp's parser, before the app: a 400
    (plain text, not our JSON: no handler runs), no traceback to the client, no file."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), reply[:200]
    assert b"Traceback" not in reply
    assert served.outside_tree() == served.outside_before
    assert served.get("/healthz").status == 200


def test_job_id_is_the_capability_for_its_job(served: ServedRun) -> None:
    """As in the seed, /keepalive and /completed take no engine id: whoever holds a job id
    (128 random bits, unguessable) reports on that job. An engineid sent along is ignored,
    and look-alike ids (leading zero, neighbour) are unknown jobs, not aliases."""
    job = take_a_job(served, "engine-a")
    jid = job["jobid"]
    assert len(jid) >= 30
    for alias in ["0" + jid, str(int(jid) + 1), jid[:-1]]:
        assert served.query("/keepalive", job_id=alias, job_state="PROCESSING").status == 404
    body = served.query("/keepalive", job_id=jid, job_state="PROCESSING").json()
    assert body == {"late": False}
    body = served.query("/keepalive", job_id=jid, job_state="PROCESSING", engineid="engine-b")
    assert body.json() == {"late": False}
    assert served.query("/completed", job_id=jid, job_state="DONE").json() == {"ok": True}
    assert (served.output_dir / f"LOGOUTPUT_{jid}_engine-a").is_dir()


# ------------------------------------------------------------------- fuzzing

# The status stream never ends on its own (it ends when the client goes): a generated
# request would wait out its timeout. tests/serve/test_stream.py covers it.
SCHEMA = schemathesis.openapi.from_path(
    str(resources.files("reactor.serve").joinpath("openapi.json"))
).exclude(operation_id="statusStream")
SCHEMA.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=REPEATABLE,
)
# A generated wait_s of up to 60 s would hold the request that long (the long-poll):
# the fuzzer's waits are cut to FUZZ_WAIT_S, its values out of bounds kept (400s);
# tests/serve/test_long_poll.py covers the waits themselves.
FUZZ_WAIT_S = 0.05


@SCHEMA.hook
def map_query(ctx: schemathesis.HookContext, query: dict[str, Any] | None) -> Any:
    if query and "wait_s" in query:
        with contextlib.suppress(TypeError, ValueError):
            if 0 < float(query["wait_s"]) <= 60:
                query["wait_s"] = FUZZ_WAIT_S
    return query


FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=REPEATABLE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def check_response(served: ServedRun, response: schemathesis.Response, counter: str) -> None:
    served.requests[counter] += 1
    content_type = response.headers.get("content-type", [""])[0]
    answer = Answer(response.status_code, content_type, response.content or b"")
    served.check(answer, head=response.request.method == "HEAD")


def test_fuzz_engine_workflows(served: ServedRun) -> None:
    """Sequences that follow the document's links: a job id from /assignwork goes on to
    /keepalive and /completed with generated states, while leases expire underneath."""
    load_all_checks()
    # The link hands on `jobid` whatever it is, and an empty batch's is the seed's "-1",
    # which /keepalive rightly refuses (400): not a valid request wrongly rejected.
    accepts_valid_data = CHECKS.get_one("positive_data_acceptance")

    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": served.url, "timeout": 10}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            check_response(served, response, "stateful")

        def validate_response(
            self,
            response: schemathesis.Response,
            case: schemathesis.Case,
            additional_checks: list[schemathesis.CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=[accepts_valid_data],
                transport_kwargs=kwargs or None,
                recorder=getattr(self, "recorder", None),
            )

    Workflow.run(
        settings=settings(FUZZ_SETTINGS, max_examples=STATEFUL_SCENARIOS, stateful_step_count=8)
    )
    assert served.requests["stateful"] > 0


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_fuzz_every_operation(case: schemathesis.Case, served: ServedRun) -> None:
    """Generated requests, valid and invalid, each held to the document and the promises."""
    response = case.call(base_url=served.url, timeout=10)
    check_response(served, response, "stateless")
    case.validate_response(response)


# ------------------------------------------------------------- still standing


def test_after_all_that_a_normal_engine_cycle_works(served: ServedRun) -> None:
    """Probes answer, a new file is taken in, and assign, keepalive, complete still work."""
    assert served.get("/healthz").json() == {"status": "ok"}
    assert served.get("/readyz").json() == {"status": "ready"}
    add_pod5_files(served, range(N_FILES, N_FILES + 2))
    job = take_a_job(served, "after-fuzz")
    out = served.output_dir / job["job_output_dir"]
    for name in job["batch"]:
        (out / "pass" / f"{name.removesuffix('.pod5')}.fastq").write_text("@r\nA\n+\n!\n")
    keepalive = served.query("/keepalive", job_id=job["jobid"], job_state="PROCESSING")
    assert keepalive.json() == {"late": False}
    done = served.query("/completed", job_id=job["jobid"], job_state="DONE")
    assert done.json() == {"ok": True}
    merged = os.listdir(served.output_dir / "pass")
    assert f"job_id_{job['jobid']}_{job['batch'][0].removesuffix('.pod5')}.fastq" in merged
    served.links_stay_inside()


def unexpected_log_entry(entry: dict[str, Any]) -> bool:
    """A failed request, or any error but one known, harmless kind: aiohttp logs each
    malformed HTTP request sent above at error level, with its parser's traceback (in the
    log only; the client gets a plain 400)."""
    if entry.get("event") == "request_failed":
        return True
    if entry.get("level") not in {"error", "critical"}:
        return False
    logger = str(entry.get("logger", ""))
    if logger == "aiohttp.server":
        return "aiohttp.http_exceptions" not in str(entry.get("exception", ""))
    return True


def test_nothing_unexpected_was_logged(served: ServedRun) -> None:
    """No request failed inside the app, and nothing else logged an error."""
    assert [entry for entry in served.server_log() if unexpected_log_entry(entry)] == []
    generated = served.requests["stateless"] + served.requests["stateful"]
    print(f"requests: {dict(served.requests)}; generated: {generated}")
    # 14 operations, 15 examples each, and the stateful scenarios: about 510 requests
    assert generated <= 640 or not REPEATABLE, "the fuzz budget grew: check schemathesis"
