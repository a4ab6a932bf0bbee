"""The text a person reads in `reactor status`: one /status snapshot, rendered to lines.

Pure: `render(status, ...)` takes the /status JSON and the terminal's width and returns
plain lines, without escape codes. It never invents what the service does not report:
progress is counted in files; the reads line ("1.2 Gb · N50 14.3 kb · Q ≥ 10: 91 %")
shows the reads the service counted in the merged outputs, when it counts them.
`reactor.ops.status` fetches the snapshot and puts the lines on the screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reactor.core.readstats import human_bases
from reactor.ops.fleet_view import fleet_lines

QUARANTINE_SHOWN = 10  # names shown; the rest is "+K more"
MIN_BAR = 10
MAX_BAR = 40


@dataclass(frozen=True, slots=True)
class Glyphs:
    """Characters for the bar and for "unknown"; ASCII where the output cannot take more."""

    full: str
    empty: str
    none: str  # an unknown value, such as the ETA before any file is done
    sep: str
    ascii_only: bool = False

    @classmethod
    def for_encoding(cls, encoding: str | None) -> Glyphs:
        fancy = cls("█", "░", "—", " · ")
        try:
            (fancy.full + fancy.empty + fancy.none + fancy.sep).encode(encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            return cls("#", ".", "-", " | ", ascii_only=True)
        return fancy

    def clean(self, name: str) -> str:
        """A name from the service, safe to print: a file name may hold any character but
        / and NUL, and an escape sequence in one must not reach the terminal."""
        return "".join(
            ch if ch.isprintable() and (ch.isascii() or not self.ascii_only) else "?" for ch in name
        )


def duration(seconds: float) -> str:
    """3 s, 4 min 10 s, 18 min, 2 h 05 min, 3 d 4 h."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 10:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def reads_cells(reads: dict[str, Any], glyphs: Glyphs) -> list[str]:
    """A run's reads in a few words: yield, N50, the share that passed."""
    cells = [human_bases(reads["bases"]), f"N50 {human_bases(reads['n50'])}"]
    threshold = reads.get("min_qscore")
    if reads["reads"] and threshold is not None:
        ge = ">=" if glyphs.ascii_only else "≥"
        share = 100 * reads["pass_reads"] / reads["reads"]
        cells.append(f"Q {ge} {threshold:g}: {share:.0f} %")
    cells.append(f"{reads['reads']:,} reads")
    accounting = reads.get("accounting") or {}
    if accounting and not accounting.get("exactly_once", True):
        wrong = accounting.get("duplicates", 0) + accounting.get("unknown", 0)
        cells.append(f"{wrong:,} NOT ONCE")
    return cells


def bar(done: int, total: int, width: int, glyphs: Glyphs) -> str:
    filled = width * done // total if total else 0
    return f"[{glyphs.full * filled}{glyphs.empty * (width - filled)}]"


def wrap(first: str, parts: list[str], sep: str, width: int, indent: str) -> list[str]:
    """`first` then `parts` joined by `sep`, onto more lines (starting with `indent`)
    where one would pass `width`; a part is never split."""
    lines: list[str] = []
    line = first + parts[0]
    for part in parts[1:]:
        if len(line) + len(sep) + len(part) <= width:
            line += sep + part
        else:
            lines.append(line)
            line = indent + part
    return [*lines, line]


def render(status: dict[str, Any], *, url: str, width: int, glyphs: Glyphs, at: str) -> list[str]:
    """The lines of one snapshot, `width` columns wide where they can be; `at` is the
    wall-clock time the snapshot was taken, as shown."""
    if status.get("mode") == "host":
        return render_host(status, url=url, width=width, glyphs=glyphs, at=at)
    lines = wrap("reactor ", [url, f"phase {status['phase']}", at], glyphs.sep, width, "  ")
    if not status["ready"]:
        lines.append("  the service is recovering its state from disk; counts are not final yet")
    lines += _progress(status, width, glyphs)
    if (reads := status.get("reads")) and reads.get("reads"):
        lines += wrap("reads    ", reads_cells(reads, glyphs), glyphs.sep, width, INDENT)
    lines += _engines(status["engines"], status.get("engines_total"), width, glyphs)
    lines += fleet_lines(status.get("fleet"), glyphs)
    lines += _quarantined(status["quarantined"], width, glyphs)
    if "held" in status:  # services before held jobs existed do not send it
        lines += _held(status["held"], width, glyphs)
    return lines


def _progress(status: dict[str, Any], width: int, glyphs: Glyphs) -> list[str]:
    files = status["files"]
    seen = status["files_total"]
    finished = files["done"] + files["quarantined"]
    if seen == 0:
        lines = ["files    no .pod5 file seen yet"]
    else:
        size = max(MIN_BAR, min(MAX_BAR, width - 36))
        percent = 100 * finished / seen
        lines = [
            f"files    {bar(finished, seen, size, glyphs)} {finished:,}/{seen:,} {percent:.1f}%"
        ]
    counts = [
        f"{key} {files[key]:,}"
        for key in ("done", "quarantined", "ready", "assigned", "incomplete")
    ]
    lines += wrap(INDENT, counts, glyphs.sep, width, INDENT)
    throughput = status["throughput"]
    window = duration(throughput["window_s"])
    rate = [
        f"{60 * throughput['files_per_s']:.1f} files/min",
        f"over the last {window}",
        f"({60 * throughput['files_per_s_since_start']:.1f} since start)",
    ]
    lines += wrap("rate     ", rate, " ", width, INDENT)
    lines += wrap("ETA      ", _eta(status, window, glyphs), " ", width, INDENT)
    return lines


INDENT = " " * 9  # under the values of "files", "rate", "ETA"


def _eta(status: dict[str, Any], window: str, glyphs: Glyphs) -> list[str]:
    files = status["files"]
    waiting = files["incomplete"] + files["ready"] + files["assigned"]
    eta_s = status["throughput"]["eta_s"]
    if waiting == 0:
        return [glyphs.none, "(no file waiting)"]
    if eta_s is None:
        return [glyphs.none, f"(no file done in the last {window})"]
    if status["phase"] in ("starting", "running"):  # more files will come
        return [duration(eta_s), "for the files seen so far"]
    return [duration(eta_s)]


ENGINE_COLUMNS = ("engine", "last seen", "live jobs", "files done", "jobs done/failed/expired")


def _engine_cells(engine: dict[str, Any]) -> tuple[str, ...]:
    benched = engine["benched_s"]
    return (
        engine["engine_id"],
        f"{duration(engine['last_seen_s'])} ago",
        str(engine["live_jobs"]),
        f"{engine['files_done']:,}",
        f"{engine['jobs_done']}/{engine['jobs_failed']}/{engine['jobs_expired']}",
        f"benched for {duration(benched)}" if benched > 0 else "",
    )


def _engines(
    engines: list[dict[str, Any]], total: int | None, width: int, glyphs: Glyphs
) -> list[str]:
    if not engines:
        return ["engines  none has asked for work yet"]
    ordered = sorted(engines, key=lambda e: str(e["engine_id"]))
    rows = [_engine_cells({**e, "engine_id": glyphs.clean(e["engine_id"])}) for e in ordered]
    # A service lists the engines seen last; an older one lists all and gives no total.
    shown = f" (the {len(rows):,} seen last)" if total is not None and total > len(rows) else ""
    lines = [f"engines  {total if total is not None else len(rows):,}{shown}"]
    table = [(*ENGINE_COLUMNS, ""), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(ENGINE_COLUMNS))]
    wide = [
        ("  " + "  ".join(c.ljust(w) for c, w in zip(row, [*widths, 0], strict=True))).rstrip()
        for row in table
    ]
    if max(len(line) for line in wide) <= width:
        return lines + wide
    # Too narrow for a table: a few lines per engine, each value named.
    for name, seen, live, done, jobs, benched in rows:
        parts = [f"seen {seen}", f"{live} live jobs", f"{done} files done"]
        parts += [f"jobs done/failed/expired {jobs}", *([benched] if benched else [])]
        lines += wrap(f"  {name}: ", parts, glyphs.sep, width, "    ")
    return lines


HELD_SHOWN = 5  # held jobs shown; the rest is "+K more"


def _held(held: dict[str, Any], width: int, glyphs: Glyphs) -> list[str]:
    """Jobs kept for a person, each with what is wrong (they are rare, and each one
    matters: an engine writing what it must not, or a folder it broke)."""
    total = held["total"]
    if total == 0:
        return []
    lines = [f"held     {total:,} job{'s' if total != 1 else ''} for a person to look at"]
    for job in held["jobs"][:HELD_SHOWN]:
        first = f"  {glyphs.clean(job['engine_id'])} job {job['job_id'][:12]}… ({job['state']}): "
        lines += wrap(first, glyphs.clean(job["reason"]).split(" "), " ", width, "    ")
    if total > min(len(held["jobs"]), HELD_SHOWN):
        lines.append(
            f"  +{total - min(len(held['jobs']), HELD_SHOWN):,} more (reactor status --json)"
        )
    return lines


def _quarantined(quarantined: dict[str, Any], width: int, glyphs: Glyphs) -> list[str]:
    total = quarantined["total"]
    if total == 0:
        return ["quarantined  none"]
    lines = [f"quarantined  {total:,} file{'s' if total != 1 else ''}"]
    listed = quarantined["files"][:QUARANTINE_SHOWN]
    for entry in listed:
        failures = entry["failures"]
        note = f"failed {failures} time{'s' if failures != 1 else ''}" if failures else ""
        name = glyphs.clean(entry["name"])
        lines += wrap("  ", [name, *([note] if note else [])], "  ", width, "    ")
    if total > len(listed):
        lines.append(f"  +{total - len(listed):,} more")
    hint = ["retry them once the cause is fixed", "(a damaged file, a broken engine):"]
    lines += wrap("  ", hint, " ", width, "  ")
    lines.append("    reactor requeue --all")
    lines += wrap(
        "    ", ["reactor requeue FAILED_<job>_<engine>", "(one folder)"], "  ", width, "    "
    )
    return lines


RUN_COLUMNS = ("run", "sample", "phase", "files done", "ETA", "live jobs", "weight", "reads")
LEFT_SHOWN = 5


def render_host(
    status: dict[str, Any], *, url: str, width: int, glyphs: Glyphs, at: str
) -> list[str]:
    """A host-mode service: one line per run it serves, then what it does not serve."""
    runs = status["runs"]
    live = sum(1 for run in runs if run["phase"] != "complete")
    head = [url, f"{live} run{'s' if live != 1 else ''} live", at]
    lines = wrap("reactor ", head, glyphs.sep, width, "  ")
    if not status["ready"]:
        lines.append("  the service is finding its runs and recovering them; counts are not final")
    if not runs:
        lines.append("runs     none yet: no run under the roots was adopted")
    else:
        rows = [_run_cells(run, glyphs) for run in runs]
        table = [RUN_COLUMNS, *rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(RUN_COLUMNS))]
        lines.append(f"runs     {len(runs):,}")
        lines += [
            ("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
            for row in table
        ]
    files = status["files"]
    counts = [
        f"{key} {files.get(key, 0):,}" for key in ("done", "quarantined", "ready", "assigned")
    ]
    lines += wrap("files    ", counts, glyphs.sep, width, INDENT)
    lines += fleet_lines(status.get("fleet"), glyphs)
    finished, left, failed = status["finished"], status["left"], status["failed"]
    # /status lists RUNS_LISTED of each at most, with totals (a service older than the
    # totals listed them all)
    finished_total = status.get("finished_total", len(finished))
    left_total = status.get("left_total", len(left))
    if finished_total:
        lines.append(
            f"finished {finished_total:,} run{'s' if finished_total != 1 else ''} (not served)"
        )
    if left_total:
        names = [glyphs.clean(run["run"]) for run in left[:LEFT_SHOWN]]
        more = [f"+{left_total - len(names):,} more"] if left_total > len(names) else []
        lines += wrap(
            f"left     {left_total:,} older run{'s' if left_total != 1 else ''}: ",
            [*names, *more],
            ", ",
            width,
            INDENT,
        )
        lines.append(f"{INDENT}serve one with: reactor run add RUN")
    for run in failed:
        first = f"failed   {glyphs.clean(run['run'])}: "
        lines += wrap(first, glyphs.clean(run["reason"]).split(" "), " ", width, INDENT)
    unlisted = status.get("failed_total", len(failed)) - len(failed)
    if unlisted > 0:
        lines.append(f"failed   +{unlisted:,} more")
    return lines


def _run_cells(run: dict[str, Any], glyphs: Glyphs) -> tuple[str, ...]:
    eta = run.get("eta_s")
    waiting = run["total"] - run["done"] - run["files"].get("quarantined", 0)
    return (
        glyphs.clean(run["run"]),
        glyphs.clean(run["sample"]),
        run["phase"],
        f"{run['done']:,}/{run['total']:,}",
        glyphs.none if eta is None or waiting == 0 else duration(eta),
        str(run["jobs_live"]),
        f"{run['weight']:g}",
        glyphs.sep.strip().join(reads_cells(reads, glyphs)[:3])
        if (reads := run.get("reads")) and reads.get("reads")
        else glyphs.none,
    )
