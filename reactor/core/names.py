"""Names that become paths: validation, job id shape, and the folder naming scheme.

Everything reactor creates on disk is named here, so that one module decides what can
land where. An engine id or a job id that reaches a path has passed `check_engine_id` /
`check_job_id`; a `.pod5` name has passed `is_pod5_name`. None of them can contain a
path separator, start with a dot, or be `..`, so no join below can leave the run folders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

ENGINE_ID_MAX_LEN = 64
_ENGINE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Job ids are 128 random bits written in decimal, the shape the seed used (uuid4().int);
# the service makes them (`reactor.serve.service.new_job_id`).
_JOB_ID_RE = re.compile(r"[0-9]{1,40}")
_POD5_NAME_RE = re.compile(r"[^/\x00-\x1f\x7f.][^/\x00-\x1f\x7f]*\.pod5")

# Every .pod5 file starts and ends with these 8 bytes (pod5-file-format,
# docs/SPECIFICATION.md, "Signature"): a file with both is complete.
POD5_SIGNATURE = bytes.fromhex("8B504F440D0A1A0A")

STAGING_PREFIX = ".reactor-staging-"
# INPUTDIR's folders of links are built in here (see Journal._input_staging); as a
# staging name, recovery removes it with whatever a crash left inside.
INPUT_STAGING_NAME = f"{STAGING_PREFIX}input"
# Earlier versions kept each job's record here, in its output folder, where engines write;
# only `reactor.disk.migration` reads it now, once, at the first start on such a run.
MANIFEST_NAME = "reactor-job.json"
# OUTPUTDIR's folders of final outputs, and the same two in every job's output folder.
RESULT_FOLDERS = ("pass", "fail")


class InvalidName(ValueError):
    """A name from a request or from disk that reactor will not turn into a path."""


def check_engine_id(engine_id: str) -> str:
    """Return `engine_id` if it is safe to use in a folder name, else raise InvalidName."""
    if not engine_id:
        msg = "engineid is empty; give each engine a name such as its host name"
        raise InvalidName(msg)
    if len(engine_id) > ENGINE_ID_MAX_LEN:
        msg = f"engineid is {len(engine_id)} characters long; the limit is {ENGINE_ID_MAX_LEN}"
        raise InvalidName(msg)
    if _ENGINE_ID_RE.fullmatch(engine_id) is None:
        msg = (
            "engineid may hold only letters, digits, '.', '_' and '-', "
            "and must start with a letter or digit"
        )
        raise InvalidName(msg)
    return engine_id


def check_job_id(job_id: str) -> str:
    """Return `job_id` if it has the shape of a job id reactor hands out, else raise."""
    if _JOB_ID_RE.fullmatch(job_id) is None:
        msg = "job_id must be the decimal job id that /assignwork returned"
        raise InvalidName(msg)
    return job_id


def is_pod5_name(name: str) -> bool:
    """True for a plain, visible `*.pod5` file name (no folders, no hidden files)."""
    return _POD5_NAME_RE.fullmatch(name) is not None


OUTPUT_SUFFIXES = (".fastq.gz", ".fastq", ".fq.gz", ".fq", ".bam")
_JOB_TAG_RE = re.compile(r"job_id_[0-9]+_")


_OUTPUT_EXTENSIONS = frozenset({"fastq", "fq", "bam"})
_GZIPPED_EXTENSIONS = frozenset({"fastq", "fq"})


def output_stem(name: str) -> str | None:
    """The stem a FASTQ/BAM output would share with its `.pod5` (the seed's done rule).

    Outputs reactor merged carry a `job_id_<jobid>_` tag in front; the tag is not part of
    the stem. Returns None for names that are not basecalling outputs. The name ends in
    one of OUTPUT_SUFFIXES, in any case; read by its last extensions, not by lowering the
    whole name: start-up reads every name in pass/ and fail/ (10^5-10^6 of them).
    """
    stem, dot, extension = name.rpartition(".")
    if not dot:
        return None
    extension = extension.lower()
    if extension == "gz":
        stem, dot, extension = stem.rpartition(".")
        if not dot or extension.lower() not in _GZIPPED_EXTENSIONS:
            return None
    elif extension not in _OUTPUT_EXTENSIONS:
        return None
    if not stem.startswith("job_id_"):
        return stem
    tag = _JOB_TAG_RE.match(stem)
    return stem[tag.end() :] if tag else stem


def output_stems(names: Iterable[str]) -> set[str]:
    """`output_stem` of each name that is an output (a folder's listing at start: 10^6
    names). The common name, `<stem>.fastq` with no tag, is read without a call."""
    stems: set[str] = set()
    add = stems.add
    for name in names:
        if name.endswith(".fastq") and not name.startswith("job_id_"):
            add(name[:-6])  # what output_stem gives it
        elif (stem := output_stem(name)) is not None:
            add(stem)
    return stems


def job_tag(job_id: str) -> str:
    """Prefix of every output merged into pass/ or fail/ from this job (as the seed did)."""
    return f"job_id_{job_id}_"


class Folder(StrEnum):
    """Kinds of job folders, named `<KIND>_<jobid>_<engineid>` as in the seed."""

    # in INPUTDIR
    ASSIGNED = "ASSIGNED"  # symlinks handed to a live job
    FAILED = "FAILED"  # quarantined files, kept for a person
    UNKNOWN = "UNKNOWN"  # an engine reported a state reactor does not know
    # in OUTPUTDIR
    TMPOUTPUT = "TMPOUTPUT"  # where a live (or expired, not yet superseded) job writes
    LOGOUTPUT = "LOGOUTPUT"  # a DONE job's leftovers (its logs; outputs it could not merge)
    FAILEDOUTPUT = "FAILEDOUTPUT"  # a FAILED job whose files were quarantined
    RETRIEDOUTPUT = "RETRIEDOUTPUT"  # a FAILED job whose files went back to the queue
    EXPIREDOUTPUT = "EXPIREDOUTPUT"  # an expired job's partial outputs, never merged
    RELEASEDOUTPUT = "RELEASEDOUTPUT"  # a job handed back unfinished: partial outputs, never merged
    REFUSEDOUTPUT = "REFUSEDOUTPUT"  # a DONE whose outputs broke the rules: kept, never merged
    UNKNOWNOUTPUT = "UNKNOWNOUTPUT"  # outputs of a job that reported an unknown state
    ORPHANOUTPUT = "ORPHANOUTPUT"  # an output folder whose assignment never committed
    # a released quarantine, as earlier versions recorded it (now `.reactor/requeued/`);
    # read only by `reactor.disk.migration`
    REQUEUED = "REQUEUED"


INPUT_FOLDERS = frozenset({Folder.ASSIGNED, Folder.FAILED, Folder.UNKNOWN})


@dataclass(frozen=True, slots=True)
class JobFolder:
    """A parsed `<KIND>_<jobid>_<engineid>` folder name."""

    kind: Folder
    job_id: str
    engine_id: str

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.job_id}_{self.engine_id}"

    def renamed(self, kind: Folder) -> JobFolder:
        return JobFolder(kind, self.job_id, self.engine_id)


def parse_job_folder(name: str) -> JobFolder | None:
    """Parse a job folder name; None for anything else (including unsafe names)."""
    kind_text, sep, rest = name.partition("_")
    if not sep:
        return None
    try:
        kind = Folder(kind_text)
    except ValueError:
        return None
    job_id, sep, engine_id = rest.partition("_")
    if not sep or _JOB_ID_RE.fullmatch(job_id) is None:
        return None
    if _ENGINE_ID_RE.fullmatch(engine_id) is None:
        return None
    return JobFolder(kind, job_id, engine_id)
