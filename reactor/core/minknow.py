"""MinKNOW's data root, read from names: run folders, POD5 folders and POD5 file names.

The layout (ont-output-specifications, minknow/output_structure; docs/host.md says more):

    {root}/{protocol_group_id}/{sample_id}/{YYYYMMDD_HHMM}_{device_id}_{flow_cell_id}_{prid8}/
        pod5/  or  pod5_pass/ + pod5_fail/   (older releases), and pod5_skip/
            [{alias}/]                       barcode folders when split by barcode
                {flow_cell_id}_{prid8}_{runid8}_{batch}.pod5                   current
                {flow_cell_id}_{pass|fail|skip}_[{alias}_]{prid8}_{runid8}_{batch}.pod5
        queued_reads/, tmp/                  reads waiting; moved into place from there
        final_summary_{flow_cell_id}_{prid8}_{runid8}.txt   once every file is written

With data pooling on, `{sample_id}/` itself holds the POD5 folders of several runs, told
apart only by the flow cell and protocol run id in their file names.

A run is known on a host by its flow cell and the first 8 characters of its protocol run
id (`RunKey`): the run folder's name ends with both, every POD5 name carries both, and
so does the final summary's name. Pure: names in, records out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# Where a run folder sits below a watch root: {group}/{sample}/{run}.
RUN_DEPTH = 3
# A run's folders of POD5 files, by MinKNOW's names.
POD5_FOLDERS = ("pod5", "pod5_pass", "pod5_fail", "pod5_skip")
# MinKNOW's own basecalled outputs: present when it basecalled the run live.
MINKNOW_OUTPUTS = ("fastq_pass", "fastq_fail", "bam_pass", "bam_fail")
# A run's folders MinKNOW moves reads out of: never work, never watched.
WAITING_FOLDERS = ("queued_reads", "tmp")

_HEX8 = r"[0-9A-Fa-f]{8}"
# device ids seen: 1A, X1, MN12345, P2S-12345-A; flow cells: PAA12345, FAL12345, FLO-…
_WORD = r"[A-Za-z0-9][A-Za-z0-9-]*"
_RUN_FOLDER_RE = re.compile(
    rf"(?P<date>[0-9]{{8}})_(?P<time>[0-9]{{4}})_(?P<device>{_WORD})_(?P<fc>{_WORD})_(?P<prid>{_HEX8})"
)
# From the right: batch, runid8, prid8 are fixed; before them an optional alias (which
# may hold underscores), an optional pass/fail/skip, and the flow cell.
_POD5_RE = re.compile(
    rf"(?P<fc>{_WORD})"
    r"(?:_(?P<kind>pass|fail|skip))?"
    r"(?:_(?P<alias>[A-Za-z0-9][A-Za-z0-9_-]*?))?"
    rf"_(?P<prid>{_HEX8})_(?P<runid>{_HEX8})_(?P<batch>[0-9]{{1,9}})\.pod5"
)
_FINAL_SUMMARY_RE = re.compile(
    rf"final_summary_(?P<fc>{_WORD})_(?P<prid>{_HEX8})(?:_(?P<runid>{_HEX8}))?\.txt"
)


class ReadKind(StrEnum):
    """What a POD5 name says of its reads: nothing (current MinKNOW), or the older
    names' pass/fail, or skip (reads MinKNOW's live basecalling skipped)."""

    ANY = "any"
    PASS = "pass"  # noqa: S105 (a read kind, not a password)
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, order=True)
class RunKey:
    """One run on a host: its flow cell and the first 8 characters of its protocol run id.
    `str()` is the form used in logs, metrics and the status: `PAA12345_fd97ea7b`."""

    flow_cell: str
    protocol_run: str

    def __str__(self) -> str:
        return f"{self.flow_cell}_{self.protocol_run}"


@dataclass(frozen=True)
class RunFolderName:
    """A run folder's name: `20261205_1412_1A_PAA12345_fd97ea7b`."""

    started: str  # YYYYMMDD_HHMM, as MinKNOW wrote it (local time of the host)
    device: str
    key: RunKey


@dataclass(frozen=True)
class Pod5Name:
    """A POD5 file's name, in any of MinKNOW's forms."""

    key: RunKey
    acquisition_run: str  # first 8 characters of the acquisition run id
    batch: int
    kind: ReadKind = ReadKind.ANY
    alias: str | None = None  # the barcode alias, in names of runs split by barcode


def parse_run_folder(name: str) -> RunFolderName | None:
    """The parts of a run folder's name, or None if MinKNOW would not have made it."""
    match = _RUN_FOLDER_RE.fullmatch(name)
    if match is None:
        return None
    key = RunKey(match["fc"], match["prid"].lower())
    return RunFolderName(f"{match['date']}_{match['time']}", match["device"], key)


def parse_pod5_name(name: str) -> Pod5Name | None:
    """The parts of a POD5 name, or None for a name of none of MinKNOW's forms."""
    match = _POD5_RE.fullmatch(name)
    if match is None:
        return None
    kind = ReadKind(match["kind"]) if match["kind"] else ReadKind.ANY
    return Pod5Name(
        key=RunKey(match["fc"], match["prid"].lower()),
        acquisition_run=match["runid"].lower(),
        batch=int(match["batch"]),
        kind=kind,
        alias=match["alias"],
    )


def pod5_name(parts: Pod5Name) -> str:
    """The name MinKNOW gives a file with these parts (the inverse of `parse_pod5_name`)."""
    words = [parts.key.flow_cell]
    if parts.kind is not ReadKind.ANY:
        words.append(str(parts.kind))
    if parts.alias is not None:
        words.append(parts.alias)
    words += [parts.key.protocol_run, parts.acquisition_run, str(parts.batch)]
    return "_".join(words) + ".pod5"


def final_summary_key(name: str) -> RunKey | None:
    """The run a `final_summary_*.txt` name belongs to, or None for any other name."""
    match = _FINAL_SUMMARY_RE.fullmatch(name)
    if match is None:
        return None
    return RunKey(match["fc"], match["prid"].lower())


class Sources(StrEnum):
    """Which of a run's POD5 folders are work (the `sources` setting)."""

    AUTO = "auto"  # decided from the run's own files (`called_live`)
    ALL = "all"  # every POD5 folder
    POD5 = "pod5"  # every POD5 folder but pod5_skip/
    POD5_SKIP = "pod5_skip"  # pod5_skip/ only


@dataclass(frozen=True)
class WorkDecision:
    """A run's work: which POD5 folders, and why (for its log line and /status)."""

    folders: tuple[str, ...]
    reason: str
    skip_only: bool = False  # only pod5_skip/ is work (when it appears)


def summary_fields(text: str) -> dict[str, str]:
    """The `key=value` lines of a final summary (other lines passed over)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


def basecalling_enabled(fields: dict[str, str]) -> bool | None:
    """What a final summary says of MinKNOW's live basecalling, or None if it says nothing."""
    value = fields.get("basecalling_enabled", "").lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    return None


def work_folders(
    pod5_folders: tuple[str, ...],
    *,
    sources: Sources = Sources.AUTO,
    outputs: tuple[str, ...] = (),
    basecalled: bool | None = None,
) -> WorkDecision:
    """Which of a run's POD5 folders hold work for reactor, and why.

    MinKNOW may have basecalled the run live: then `pod5/` (or `pod5_pass/`+`pod5_fail/`)
    is basecalled already, its FASTQ/BAM in `fastq_pass/`…, and only `pod5_skip/` (reads
    it skipped, or files "Stop basecalling" moved there) needs calling. `auto` decides
    from the run's own files: its final summary's `basecalling_enabled` when it has one,
    else MinKNOW's outputs (`outputs`: which of MINKNOW_OUTPUTS are there) or a
    `pod5_skip/` (which MinKNOW makes only when it basecalls live). The decision can
    change while a run is young (MinKNOW writes its first outputs a while after its
    first POD5); files of a folder that stops being work leave the queue unless handed
    out already.
    """
    skip = tuple(name for name in pod5_folders if name == "pod5_skip")
    rest = tuple(name for name in pod5_folders if name != "pod5_skip")
    if sources is Sources.ALL:
        return WorkDecision(pod5_folders, "sources = all")
    if sources is Sources.POD5:
        return WorkDecision(rest, "sources = pod5")
    if sources is Sources.POD5_SKIP:
        return WorkDecision(skip, "sources = pod5_skip", skip_only=True)
    if basecalled is True:
        return WorkDecision(
            skip, "MinKNOW basecalled live (final summary): pod5_skip/ only", skip_only=True
        )
    if basecalled is False:
        return WorkDecision(pod5_folders, "MinKNOW did not basecall (final summary)")
    if outputs:
        reason = f"MinKNOW basecalled live ({outputs[0]}/): pod5_skip/ only"
        return WorkDecision(skip, reason, skip_only=True)
    if skip:
        reason = "MinKNOW basecalled live (pod5_skip/): pod5_skip/ only"
        return WorkDecision(skip, reason, skip_only=True)
    return WorkDecision(pod5_folders, "no sign of MinKNOW basecalling: every POD5 folder")


def is_pod5_folder(name: str) -> bool:
    """One of a run's folders of POD5 files."""
    return name in POD5_FOLDERS


def is_barcode_folder(name: str) -> bool:
    """A folder inside a POD5 folder that may hold a barcode's files (`barcode01`,
    `unclassified`, an alias from the sample sheet): any visible, printable name."""
    return bool(name) and not name.startswith(".") and name.isprintable() and "/" not in name


class Adoption(StrEnum):
    """What a service does with a run it finds under its roots without any state of its
    own there (a run it served before is always resumed, or skipped once complete)."""

    ADOPT = "adopt"  # serve it
    LEAVE = "leave"  # an old run: only on request (`reactor run add RUN`)


def adoption(*, complete: bool, started: float | None, active: float, since: float) -> Adoption:
    """A run is served on its own when it started after `since`, or when it is not
    complete (no final summary) and something changed in it after `since`.

    `started` is the start time its folder's name says (for a pooled run, when its final
    summary was written; None without one), `active`
    the latest change seen in the run folder or its POD5 folders, both in seconds since
    the epoch. A run without a final summary is not always live: a MinKNOW crash leaves
    none, so an old crashed run is left like a finished one, not queued on a first start.
    """
    if started is not None and started >= since:
        return Adoption.ADOPT
    if not complete and active >= since:
        return Adoption.ADOPT
    return Adoption.LEAVE
