"""The core's vocabulary: states, outcomes, and the records of files, jobs and engines.

Plain data, no behaviour beyond small properties: `reactor.core.state.RunState` owns and
changes these records; the journal and the service read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Where the time comes from, for the adapters around the core (which itself only ever
# takes `now`): time.monotonic in production, a hand-moved clock in tests.
Clock = Callable[[], float]


class FileState(StrEnum):
    INCOMPLETE = "incomplete"
    READY = "ready"
    ASSIGNED = "assigned"
    DONE = "done"
    QUARANTINED = "quarantined"


class JobState(StrEnum):
    ASSIGNED = "assigned"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"
    RELEASED = "released"  # handed back unfinished by its engine: files queued again
    REFUSED = "refused"  # its DONE broke the rules for outputs: nothing merged, files queued
    UNKNOWN = "unknown"


LIVE_JOB_STATES = frozenset({JobState.ASSIGNED, JobState.PROCESSING})


class EngineReport(StrEnum):
    """What an engine reported through /completed."""

    DONE = "DONE"
    FAILED = "FAILED"
    RELEASED = "RELEASED"  # the engine stopped before the end (a cluster's SIGTERM): not a failure
    UNKNOWN = "UNKNOWN"  # any other job_state string: kept aside, as the seed did

    @classmethod
    def parse(cls, job_state: str) -> EngineReport:
        upper = job_state.upper()
        for known in (cls.DONE, cls.FAILED, cls.RELEASED):
            if upper == known:
                return known
        return cls.UNKNOWN


class CompletionAction(StrEnum):
    MERGE = "merge"  # DONE: move outputs into pass/ and fail/, files done
    FAIL = "fail"  # FAILED: requeue in halves; a file failed alone may be quarantined
    RELEASE = "release"  # RELEASED: files back to the front, no attempt counted; outputs aside
    SET_ASIDE = "set_aside"  # unknown state: keep the job's folders aside, files quarantined
    # DONE whose outputs break the rules (links, devices, absurd names or counts, a
    # folder gone): nothing merged, files back to the front, the engine blamed.
    REFUSE = "refuse"
    REPEAT = "repeat"  # the same report again: harmless, nothing to do
    LATE_IGNORED = "late_ignored"  # not DONE, after expiry: files are already requeued
    # DONE after expiry, when its files went out again: its outputs are (or were already)
    # set aside and nothing is merged. Answered 2xx, saying so: a seed engine exits on
    # any other answer, and this one is not its fault.
    LATE_NOT_MERGED = "late_not_merged"
    CONFLICT = "conflict"  # cannot be accepted (409): it contradicts an earlier report


class UnknownJob(KeyError):
    """A job id this run never handed out."""


@dataclass(slots=True)
class _Rare:
    """The fields of a file record that stay at their defaults for most files."""

    failures: int = 0
    job_id: str | None = None
    expired_job: str | None = None
    solo_failures: int = 0
    failed_on: frozenset[str] = frozenset()
    batch_cap: int = 0


_COMMON = _Rare()  # read by records that have no rare fields of their own; never written


def _rare_field(name: str, doc: str) -> property:
    """A field kept in the record's `_Rare` part, made when first set to a non-default."""

    def get(record: FileRecord) -> Any:
        return getattr(record._rare or _COMMON, name)

    def put(record: FileRecord, value: Any) -> None:
        rare = record._rare
        if rare is None:
            if value == getattr(_COMMON, name):
                return
            rare = record._rare = _Rare()
        setattr(rare, name, value)

    return property(get, put, doc=doc)


class FileRecord:
    """One `.pod5` of the run. A run tracks up to millions of them, so a record holds
    three fields and a reference to its rare ones (failures, the job holding it...),
    which most files never have: 64 bytes instead of 112 (docs/operations.md,
    "Performance": memory per tracked file)."""

    __slots__ = ("_rare", "changed_at", "present", "state")

    failures = _rare_field("failures", "FAILED outcomes of jobs holding this file, so far")
    job_id = _rare_field("job_id", "the live job holding it, while ASSIGNED")
    expired_job = _rare_field(
        "expired_job", "latest expired job whose late DONE could still merge it"
    )
    solo_failures = _rare_field("solo_failures", "FAILED outcomes of jobs holding only this file")
    failed_on = _rare_field("failed_on", "engines of those solo failures")
    batch_cap = _rare_field("batch_cap", "hand it out in batches of at most this many (0: no cap)")

    def __init__(
        self,
        state: FileState,
        failures: int = 0,
        changed_at: float = 0.0,
        *,
        present: bool = True,
    ) -> None:
        self.state = state
        self.changed_at = changed_at  # time of the last state change or filesystem activity
        self.present = present  # False once the .pod5 was deleted or moved out of INPUTDIR
        self._rare: _Rare | None = None
        if failures:
            self.failures = failures

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileRecord):
            return NotImplemented
        mine = (self.state, self.changed_at, self.present, self._rare or _COMMON)
        return mine == (other.state, other.changed_at, other.present, other._rare or _COMMON)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        rare = self._rare or _COMMON
        return (
            f"FileRecord(state={self.state!r}, changed_at={self.changed_at!r}, "
            f"present={self.present!r}, {rare!r})"
        )


@dataclass(slots=True)
class Job:
    job_id: str
    engine_id: str
    files: dict[str, int]  # name -> attempt number (1 = first try) for this job
    state: JobState
    assigned_at: float
    last_seen: float
    lease_s: float
    engine_state: str = ""
    superseded: bool = False  # never merged now: expired and its files out again, or refused
    finished_at: float | None = None
    reason: str = ""  # why it is held for a person (refused, or a step that failed)

    @property
    def live(self) -> bool:
        return self.state in LIVE_JOB_STATES

    def deadline(self) -> float:
        return self.last_seen + self.lease_s


@dataclass(slots=True)
class EngineRecord:
    engine_id: str
    last_seen: float
    live_jobs: set[str] = field(default_factory=set)
    files_done: int = 0
    busy_s: float = 0.0  # seconds its done batches took, assignment to DONE: its speed
    jobs_done: int = 0
    jobs_failed: int = 0
    jobs_expired: int = 0
    jobs_released: int = 0  # batches it handed back unfinished (RELEASED)
    failure_streak: int = 0  # failed batches in a row
    benched_until: float = 0.0  # no work for it before this time


@dataclass(frozen=True, slots=True)
class AssignPlan:
    """What an assignment will hand out; nothing has changed yet."""

    engine_id: str
    files: dict[str, int]  # name -> attempt, in queue order
    supersede: tuple[str, ...]  # expired jobs whose outputs must be set aside first
    benched: bool = False  # the engine is benched: nothing for it now

    @property
    def empty(self) -> bool:
        return not self.files


@dataclass(frozen=True, slots=True)
class CompletionPlan:
    """What a /completed report will do; nothing has changed yet."""

    job: Job
    outcome: EngineReport
    action: CompletionAction
    requeue: tuple[str, ...] = ()
    quarantine: tuple[str, ...] = ()
    supersede: bool = False  # LATE_NOT_MERGED: set the expired job's outputs aside now
    reason: str = ""
