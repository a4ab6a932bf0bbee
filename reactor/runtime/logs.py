"""Logging: one structlog pipeline, and the standard library's loggers routed through it.

`configure_logging` runs once at start. Every line on the stream then comes from the same
processors: JSON objects (one per line) when the stream is not a terminal, readable
key=value lines when it is. aiohttp's and watchdog's standard-library records are rendered
by `structlog.stdlib.ProcessorFormatter`, so the output stays one stream of one format.

Keys that every line may carry, stable for anyone who parses the logs:

``event``       what happened, a short snake_case name (``job_assigned``, ``file_ready``)
``level``       debug, info, warning, error or critical
``timestamp``   ISO 8601, UTC
``logger``      the logger's name, for standard-library records
``job_id``      the job the line is about
``engine_id``   the engine the line is about
``files``       how many files (or which files) the line is about
``attempt``     which try of a file or batch this is, starting at 1
``duration_s``  how long something took, in seconds
``name``        a file name, such as a ``.pod5`` in the input folder
``state``       a file's or job's new state
``reason``      why something happened (an expiry, a quarantine, a refusal)
``exception``   the formatted traceback, when an error is logged with one

Under systemd, stdout goes to the journal. systemd says so in ``JOURNAL_STREAM``
(``device:inode`` of the stream, see systemd.exec(5)); when it names our stream, each line
is prefixed with its syslog priority (``<4>`` for a warning), which journald strips and
stores as ``PRIORITY`` (``SyslogLevelPrefix=yes`` is systemd's default). The journal's
``MESSAGE`` is then the bare JSON object, and ``journalctl -p warning`` works.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_FORMATS = ("auto", "json", "console")
# watchdog logs every inotify event at debug; only its warnings are worth a line.
_QUIET_LOGGERS = {"watchdog": logging.WARNING}


def _drop_benign_watchdog_errors(record: logging.LogRecord) -> bool:
    """watchdog 7 logs this at ERROR each time a watch is removed while its emitter is
    reading (reactor removes its watches when it stops, or restarts a dead observer):
    nothing is wrong, and such lines would bury real errors in the log aggregation."""
    return not record.getMessage().startswith(
        "InotifyEmitter.queue_events() called when the thread is inactive"
    )


class _ReactorHandler(logging.StreamHandler[TextIO]):
    """Our handler on the root logger, told apart so a second configure replaces it."""


# syslog(3) priorities, as journald reads them from a "<N>" line prefix.
_SYSLOG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def _is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when `stream` is the journal stream systemd names in JOURNAL_STREAM."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):  # no file behind it, or no variable
        return False


def _with_priority_prefix(renderer: Processor) -> Processor:
    def render(logger: Any, method: str, event_dict: Any) -> str:
        line = renderer(logger, method, event_dict)
        if isinstance(line, bytes):
            line = line.decode()
        priority = _SYSLOG_PRIORITY.get(str(event_dict.get("level", "")), 6)
        return f"<{priority}>{line}"

    return render


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Set up structlog and the standard library's logging to write to `stream` (stdout).

    `fmt` is "json", "console", or "auto" (JSON unless `stream` is a terminal). Lines get
    a syslog priority prefix when `stream` is systemd's journal stream (`environ`, by
    default os.environ, carries JOURNAL_STREAM).
    """
    level_no = _LEVELS.get(level.lower())
    if level_no is None:
        msg = f"log level {level!r} is not one of {', '.join(_LEVELS)}"
        raise ValueError(msg)
    if fmt not in _FORMATS:
        msg = f"log format {fmt!r} is not one of {', '.join(_FORMATS)}"
        raise ValueError(msg)
    out = sys.stdout if stream is None else stream
    terminal = _is_terminal(out)
    renderer: Processor
    if fmt == "json" or (fmt == "auto" and not terminal):
        # default=str: paths and other plain objects become strings, not reprs.
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=terminal)
    if _is_journal(out, os.environ if environ is None else environ):
        renderer = _with_priority_prefix(renderer)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        # WriteLogger writes each line with one write() call, so lines from the
        # standard-library handler (other threads) cannot land inside them.
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(out, level_no, renderer, timestamper)


def _route_stdlib_logging(
    out: TextIO, level_no: int, renderer: Processor, timestamper: Processor
) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            timestamper,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _ReactorHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ReactorHandler)]:
        root.removeHandler(old)
    handler.addFilter(_drop_benign_watchdog_errors)
    root.addHandler(handler)
    root.setLevel(level_no)
    for name, floor in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, level_no))
