"""Prometheus metrics: what `/metrics` exposes, on a registry of the app's own.

Gauges that mirror state (files per state, live jobs, working engines) are read from
the core at scrape time by a collector, so they can never drift from it; counters and
histograms are bumped by the service and the HTTP middleware as things happen. Each app
has its own registry (tests build many apps in one process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from reactor.core.fleet import JobPhase
from reactor.core.readstats import RunReads
from reactor.core.state import RunState

if TYPE_CHECKING:  # made (and imported) only with a [fleet] table: `reactor.serve.app`
    from reactor.cluster.fleet import Fleet

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
JOB_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class _StateCollector(Collector):
    def __init__(self, state: RunState, clock: Callable[[], float]) -> None:
        self.state = state
        self.clock = clock

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        files = GaugeMetricFamily("reactor_files", "Files by state.", labels=["state"])
        for state, count in self.state.counts().items():
            files.add_metric([str(state)], count)
        yield files
        live = sum(1 for _ in self.state.live_jobs())
        yield GaugeMetricFamily("reactor_jobs_live", "Jobs assigned and not finished.", live)
        yield GaugeMetricFamily(
            "reactor_jobs_held",
            "Jobs held for a person: outputs refused, or decided steps on disk that could "
            "not be carried out yet.",
            self.state.held_count(),
        )
        working = self.state.working_engines(self.clock())
        yield GaugeMetricFamily(
            "reactor_engines_working", "Engines seen within the lease window.", working
        )
        yield from _engine_families(self.state)


def _engine_families(state: RunState) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Per engine, for the engines the service remembers (one silent for an hour with no
    batch is forgotten, and its series ends): batches held, files done, the seconds its
    finished batches took (their ratio is its speed), failed and expired batches."""
    held = GaugeMetricFamily(
        "reactor_engine_jobs_live", "Batches each engine holds now.", labels=["engine"]
    )
    done = CounterMetricFamily(
        "reactor_engine_files_done", "Files each engine basecalled and merged.", labels=["engine"]
    )
    busy = CounterMetricFamily(
        "reactor_engine_busy_seconds",
        "Seconds each engine's finished batches took, assignment to DONE.",
        labels=["engine"],
    )
    failed = CounterMetricFamily(
        "reactor_engine_jobs_failed", "Batches each engine reported FAILED.", labels=["engine"]
    )
    expired = CounterMetricFamily(
        "reactor_engine_jobs_expired",
        "Batches whose lease each engine let expire.",
        labels=["engine"],
    )
    for engine in state.engines.values():
        labels = [engine.engine_id]
        held.add_metric(labels, len(engine.live_jobs))
        done.add_metric(labels, engine.files_done)
        busy.add_metric(labels, engine.busy_s)
        failed.add_metric(labels, engine.jobs_failed)
        expired.add_metric(labels, engine.jobs_expired)
    yield from (held, done, busy, failed, expired)


class _ReadsCollector(Collector):
    """Reads and bases of merged jobs, from the run's exact counts at scrape time (they
    survive restarts: a counter rebuilt from the records never goes back)."""

    def __init__(self, reads: Callable[[], RunReads]) -> None:
        self.reads = reads

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        run = self.reads()
        total = run.total
        reads = CounterMetricFamily(
            "reactor_reads", "Basecalled reads merged, by pass (qs >= min_qscore) or fail.",
            labels=["outcome"],
        )  # fmt: skip
        bases = CounterMetricFamily(
            "reactor_bases", "Basecalled bases merged, by pass or fail.", labels=["outcome"]
        )
        reads.add_metric(["pass"], total.pass_reads)
        reads.add_metric(["fail"], total.reads - total.pass_reads)
        bases.add_metric(["pass"], total.pass_bases)
        bases.add_metric(["fail"], total.bases - total.pass_bases)
        yield reads
        yield bases
        yield GaugeMetricFamily("reactor_read_n50", "N50 of the merged reads, in bases.", run.n50)
        dropped = CounterMetricFamily(
            "reactor_reads_dropped",
            "Reads of done .pod5 files that are in no output (the basecaller dropped them).",
        )
        dropped.add_metric([], run.reads.dropped)
        yield dropped
        wrong = CounterMetricFamily(
            "reactor_reads_not_once",
            "Output records that break exactly-once: a read written twice, or one from no "
            "file of its job (0 in a healthy run).",
        )
        wrong.add_metric([], run.reads.duplicates + run.reads.unknown)
        yield wrong


# Fine below 10 ms, where a healthy loop stays (make load reads its p99 from these).
LOOP_LAG_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class Metrics:
    """The counters and histograms of one running service."""

    def __init__(self, state: RunState, clock: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.assignments = Counter("reactor_assignments", "Jobs handed out.", registry=registry)
        self.completions = Counter(
            "reactor_completions", "Completion reports by outcome.", ["outcome"], registry=registry
        )
        self.expiries = Counter("reactor_expiries", "Jobs expired.", registry=registry)
        self.outputs_not_merged = Counter(
            "reactor_outputs_not_merged",
            "Outputs of DONE jobs left with the job because their name was taken in "
            "pass/ or fail/.",
            registry=registry,
        )
        self.retried_files = Counter(
            "reactor_retried_files",
            "Files of failed jobs put back in the queue.",
            registry=registry,
        )
        self.released_files = Counter(
            "reactor_released_files",
            "Files of released jobs (handed back unfinished) put back in the queue.",
            registry=registry,
        )
        self.quarantined_files = Counter(
            "reactor_quarantined_files", "Files quarantined.", registry=registry
        )
        self.fs_events = Counter(
            "reactor_fs_events", "Filesystem events received, by folder.", ["area"],
            registry=registry,
        )  # fmt: skip
        self.reconciles = Counter(
            "reactor_reconciles", "Reconcile scans, by reason.", ["reason"], registry=registry
        )
        self.request_seconds = Histogram(
            "reactor_request_seconds", "HTTP request latency, by route.", ["route"],
            buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.ingest_seconds = Histogram(
            "reactor_ingest_seconds",
            "From the filesystem event of a complete .pod5 to it being ready.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.job_seconds = Histogram(
            "reactor_job_seconds", "From assignment to a DONE report.",
            buckets=JOB_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.disk_operations = Gauge(
            "reactor_disk_operations",
            "Operations waiting for their steps on disk (a slow disk shows here first).",
            registry=registry,
        )
        self.disk_commit_seconds = Histogram(
            "reactor_disk_commit_seconds",
            "How long one round of the writer took (the next phase of each step in flight, "
            "then their shared barrier), fsyncs included.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.disk_group_steps = Histogram(
            "reactor_disk_group_steps",
            "Steps that shared one barrier of the writer (one round of its group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.loop_lag_seconds = Histogram(
            "reactor_loop_lag_seconds",
            "How much later than asked a probe on the event loop woke up: how long the "
            "loop was held by something else.",
            buckets=LOOP_LAG_BUCKETS_S,
            registry=registry,
        )
        self.output_free_ratio = Gauge(
            "reactor_output_free_ratio",
            "Free share of the output filesystem at the last check (0 to 1).",
            registry=registry,
        )
        self.assigning_paused = Gauge(
            "reactor_assigning_paused",
            "1 while no work is handed out because the output filesystem is below "
            "min_free_percent.",
            registry=registry,
        )
        self.run_stalled = Gauge(
            "reactor_run_stalled",
            "1 while the run is stalled: nothing happened for stall_after and nothing waits "
            "for an engine.",
            registry=registry,
        )
        registry.register(_StateCollector(state, clock))

    def count_reads(self, reads: Callable[[], RunReads]) -> None:
        """Expose the run's read counts (read at every scrape)."""
        self.registry.register(_ReadsCollector(reads))


class _FleetCollector(Collector):
    """The fleet's jobs and what it did, read from it at scrape time."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        view = self.fleet.view()
        jobs = GaugeMetricFamily(
            "reactor_fleet_jobs", "The fleet's engine jobs by phase.", labels=["phase"]
        )
        for phase in JobPhase:
            jobs.add_metric([str(phase)], view[str(phase)])
        yield jobs
        yield GaugeMetricFamily(
            "reactor_fleet_engines_wanted", "Engine jobs the fleet wants now.", view["wanted"]
        )
        for name, key, text in (
            ("submissions", "submitted", "Engine jobs submitted (replacements included)."),
            ("submit_failures", "submit_failures", "Submissions that failed."),
            ("cancelled", "cancelled", "Queued engine jobs cancelled as not wanted."),
            ("adopted", "adopted", "Engine jobs found in the queue and adopted."),
            ("jobs_ended", "ended", "Engine jobs gone from the queue."),
            ("jobs_lost", "lost", "Engine jobs gone while their engine held a batch."),
            (
                "engines_never_connected",
                "never_connected",
                "Engine jobs that ended without their engine reaching the service.",
            ),
            ("queue_failures", "queue_failures", "Reads of the queue (squeue) that failed."),
        ):
            yield CounterMetricFamily(f"reactor_fleet_{name}", text, view[key])


def count_fleet(registry: CollectorRegistry, fleet: Fleet) -> None:
    """Expose the fleet's metrics on `registry`."""
    registry.register(_FleetCollector(fleet))
