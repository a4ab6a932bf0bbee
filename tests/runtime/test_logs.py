"""Logging: one JSON (or console) stream for structlog and the standard library alike."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from reactor.runtime.logs import configure_logging


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo configure_logging so each test starts from structlog's and logging's defaults."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "watchdog")}
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    # Only our handler: pytest's own capture handlers come and go per test phase.
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_carries_event_keys_level_and_utc_timestamp() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    structlog.get_logger().info("job_assigned", job_id="42", engine_id="gpu1", files=3, attempt=1)
    [line] = json_lines(stream)
    assert line["event"] == "job_assigned"
    assert line["level"] == "info"
    assert (line["job_id"], line["engine_id"], line["files"], line["attempt"]) == (
        "42",
        "gpu1",
        3,
        1,
    )
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == timedelta(0)


def test_context_variables_are_merged_into_every_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    structlog.contextvars.bind_contextvars(job_id="7", engine_id="gpu2")
    structlog.get_logger().info("keepalive", state="processing")
    [line] = json_lines(stream)
    assert (line["job_id"], line["engine_id"], line["state"]) == ("7", "gpu2", "processing")


LEVELS = [
    ("info", "debug", False),
    ("info", "info", True),
    ("debug", "debug", True),
    ("warning", "info", False),
    ("warning", "warning", True),
    ("error", "warning", False),
    ("ERROR", "error", True),
]


@pytest.mark.parametrize(("level", "method", "shown"), LEVELS)
def test_events_below_the_level_are_dropped(level: str, method: str, shown: bool) -> None:
    stream = io.StringIO()
    configure_logging(level, "json", stream)
    getattr(structlog.get_logger(), method)("something")
    logging.getLogger("aiohttp.server").log(logging.getLevelName(method.upper()), "stdlib")
    assert len(json_lines(stream)) == (2 if shown else 0)


def test_exception_is_rendered_into_the_json_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        structlog.get_logger().exception("engine_crashed")
    [line] = json_lines(stream)
    assert line["level"] == "error"
    assert "ZeroDivisionError" in line["exception"]


def test_paths_are_logged_as_plain_strings() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    structlog.get_logger().info("file_ready", name=Path("/runs/a.pod5"), duration_s=0.25)
    [line] = json_lines(stream)
    assert (line["name"], line["duration_s"]) == ("/runs/a.pod5", 0.25)


def test_aiohttp_access_log_comes_out_as_json_on_the_same_stream() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    structlog.get_logger().info("before")
    access = logging.getLogger("aiohttp.access")
    access.info('%s "%s" %s', "10.0.0.9", "GET /status HTTP/1.1", 200)
    structlog.get_logger().info("after")
    before, line, after = json_lines(stream)
    assert (before["event"], after["event"]) == ("before", "after")
    assert line["event"] == '10.0.0.9 "GET /status HTTP/1.1" 200'
    assert (line["level"], line["logger"]) == ("info", "aiohttp.access")
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() == timedelta(0)


def test_stdlib_extra_fields_and_context_reach_the_json_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    structlog.contextvars.bind_contextvars(job_id="9")
    logging.getLogger("aiohttp.access").info("GET", extra={"remote_address": "10.0.0.9"})
    [line] = json_lines(stream)
    assert (line["remote_address"], line["job_id"]) == ("10.0.0.9", "9")


@pytest.mark.parametrize("level", ["debug", "info"])
def test_watchdog_speaks_only_from_warning_up(level: str) -> None:
    stream = io.StringIO()
    configure_logging(level, "json", stream)
    watchdog = logging.getLogger("watchdog.observers.inotify_buffer")
    watchdog.debug("in-event")
    watchdog.info("started")
    watchdog.warning("queue overflow")
    [line] = json_lines(stream)
    assert (line["event"], line["level"]) == ("queue overflow", "warning")


def test_configuring_twice_keeps_one_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    configure_logging("info", "json", second)
    logging.getLogger("aiohttp.server").warning("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once"]


def test_console_format_is_readable_not_json() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    structlog.get_logger().info("job_done", job_id="5")
    logging.getLogger("aiohttp.access").info("GET /status")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "job_done" in lines[0]
    assert "job_id=5" in lines[0]
    assert "GET /status" in lines[1]
    assert "\x1b[" not in stream.getvalue()  # no colours: the stream is not a terminal
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


@pytest.mark.parametrize(("stream_type", "is_json"), [(io.StringIO, True), (FakeTerminal, False)])
def test_auto_format_is_json_unless_the_stream_is_a_terminal(
    stream_type: type[io.StringIO], is_json: bool
) -> None:
    stream = stream_type()
    configure_logging("info", "auto", stream)
    structlog.get_logger().info("hello")
    text = stream.getvalue()
    assert "hello" in text
    assert text.startswith("{") is is_json


def test_default_stream_is_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    structlog.get_logger().info("to_stdout")
    out, err = capsys.readouterr()
    assert json.loads(out)["event"] == "to_stdout"
    assert err == ""


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_unknown_level_or_format_is_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        configure_logging(level, fmt, io.StringIO())


def test_module_level_logger_made_before_configuration_follows_it() -> None:
    """A logger created before configure_logging (as at import time) writes its JSON."""
    early = structlog.get_logger("reactor.early")
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    early.info("file_ready", name="a.pod5")
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["event"] == "file_ready"
    assert line["name"] == "a.pod5"


def test_watchdogs_benign_unwatch_error_is_dropped_but_real_errors_are_kept() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    inotify = logging.getLogger("watchdog.observers.inotify")
    inotify.error("InotifyEmitter.queue_events() called when the thread is inactive")
    inotify.error("Unable to rebuild recursive inotify watches below %r", "/x")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["Unable to rebuild recursive inotify watches below '/x'"]


def journal_stream_env(path: Path) -> dict[str, str]:
    st = path.stat()
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_lines_to_the_journal_carry_their_syslog_priority(tmp_path: Path) -> None:
    """journald strips a leading <N> into PRIORITY; MESSAGE stays the bare JSON object."""
    path = tmp_path / "journal"
    with path.open("w") as stream:
        configure_logging("info", "json", stream, environ=journal_stream_env(path))
        structlog.get_logger().info("fine")
        structlog.get_logger().warning("odd")
        logging.getLogger("aiohttp.server").error("broken")
    lines = path.read_text().splitlines()
    prefixes = [line[: line.index("{")] for line in lines]
    assert prefixes == ["<6>", "<4>", "<3>"]
    events = [json.loads(line[3:])["event"] for line in lines]
    assert events == ["fine", "odd", "broken"]


@pytest.mark.parametrize("journal_stream", ["", "1:2", "not-a-pair"])
def test_lines_elsewhere_have_no_priority_prefix(tmp_path: Path, journal_stream: str) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        configure_logging("info", "json", stream, environ={"JOURNAL_STREAM": journal_stream})
        structlog.get_logger().warning("odd")
    assert json.loads(path.read_text())["event"] == "odd"
