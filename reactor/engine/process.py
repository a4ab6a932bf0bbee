"""`reactor engine`: the reference basecalling engine, a client of the seed's protocol.

It works with `reactor serve` and with the seed's manager alike. In a loop it:

1. asks for work (`/assignwork?engineid=E&batchsize=N`); with none, waits (from
   `poll_interval`, doubling up to `max_poll_interval`, reset by the next batch) and asks
   again;
2. runs the command for the batch as a subprocess of its own process group, without a
   shell, in the job's output folder. Its stdout and stderr go to
   ``<job output folder>/engine.log`` (stderr only when `stdout_to` names a file for
   stdout), which stays with the job's leftovers in ``LOGOUTPUT_…``;
3. sends `/keepalive?job_id=J&job_state=PROCESSING` every `report_back_interval / 2`. On
   ``{"late": true}`` (the job expired) it stops the command and moves on without
   reporting DONE (event ``job_late``); on a 4xx (404: the manager forgot the job) too;
4. reports `/completed?job_id=J&job_state=DONE` when the command exits 0, ``FAILED``
   otherwise, ``RELEASED`` when it was told to stop before the end (below); a 409 is
   logged and taken as final.

A manager that is briefly away (connection errors, timeouts, 5xx on any verb) is ridden
out: requests are retried with back-off for `grace` seconds while the command keeps
running. Only then is the batch given up (the command is stopped, nothing is reported;
the manager's lease expires and the files go to another engine), or, when asking for
work, the engine exits 3.

Stopping a command: SIGTERM to its process group, SIGKILL after `kill_grace` seconds.
Killing the engine itself with SIGKILL leaves its command running; the manager's lease
expiry still hands the files to another engine.

Signals: the first SIGTERM or SIGINT lets the batch in hand finish and be reported, takes
no new work, and exits 0 (at once when idle). A second one stops the command, reports
RELEASED and exits 1: the batch is handed back, and `reactor serve` puts its files back
at the front of the queue at once, counting no attempt against them and no failure
against the engine. With `release_after` set, the engine does the same by itself when
the command is still running `release_after` seconds after the first signal, and exits
0 (it stopped as asked). That is for a cluster's time limit: with Slurm's
``--signal=B:TERM@300`` and ``--release-after 240``, a batch that cannot finish in time
is handed back a minute before the limit instead of being killed mid-way. RELEASED needs
`reactor serve`: the seed's manager sets a job reported so aside, as any state it does
not know.

Exit codes:
  0  stopped as asked: --until-empty got an empty batch, --exit-when-idle had no work
     for that long, --once finished its batch
     (whatever its outcome: that is reported to the manager and logged), or a first signal
     (the batch in hand finished, or handed back after `release_after`)
  1  a second SIGTERM/SIGINT came: the command in hand, if still running, was stopped
     and its batch reported RELEASED
  2  a setting is wrong (one line on stderr says which and how to fix it)
  3  cannot go on: no answer from the manager for `grace` seconds when asking for work, a
     4xx or malformed answer to /assignwork (a wrong token, say), the command could not
     be started, the job's folders were not found under input_dir/output_dir, or an
     unexpected error (logged with its traceback as ``engine_crashed``)

Presets (``--preset NAME`` instead of ``--command``):
  dorado-fastq     dorado basecaller {model} {input_dir} --emit-fastq
                   stdout to {output_dir}/pass/{job_id}.fastq
  dorado-bam       dorado basecaller {model} {input_dir}
                   stdout to {output_dir}/pass/{job_id}.bam
  fake             {python} -m reactor fake-basecaller {input_dir} {output_dir}
                   reactor's stand-in basecaller, for trials without a GPU
  fake-dorado-bam  {python} -m reactor fake-basecaller --dorado {input_dir}
                   stdout to {output_dir}/pass/{job_id}.bam: the stand-in, as dorado-bam
  fake-dorado-fastq
                   {python} -m reactor fake-basecaller --dorado {input_dir} --emit-fastq
                   stdout to {output_dir}/pass/{job_id}.fastq: the stand-in, as
                   dorado-fastq
  seed-supervisor  ont_basecaller_supervisor --input_path {input_dir} --save_path
                   {output_dir} --config {model} --port auto
                   the seed engine's ont_basecaller_supervisor line; adjust to your install

Placeholders: see `reactor.settings.templates`. The command also gets REACTOR_JOB_ID,
REACTOR_ENGINE_ID, REACTOR_JOB_INPUT_DIR and REACTOR_JOB_OUTPUT_DIR in its environment.

Log events (JSON lines, keys `job_id` and `engine_id` bound): ``engine_started``,
``job_received``, ``command_started``, ``command_exited`` (``exit_code``,
``duration_s``), ``job_reported`` (``state``), ``job_late``, ``job_forgotten``,
``job_abandoned``, ``command_stopped``, ``job_not_merged``, ``completion_rejected``,
``manager_unreachable``, ``manager_reachable``, ``manager_unavailable``,
``report_abandoned``, ``stopping``,
``release_due`` (``release_after_s``), ``no_work_left``, ``engine_gave_up``,
``engine_crashed``, ``engine_stopped``.

Run it as `reactor engine …` (`reactor.commands.engine`).
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import structlog

from reactor.engine.client import EngineClient
from reactor.engine.runner import EXIT_CANNOT_GO_ON, Engine
from reactor.settings.engine import EngineConfig

# Lazy, as in the other modules: the real logger is made at first use, after
# configure_logging.
log = structlog.get_logger("reactor.engine")

# Retries of a manager that is away wait at most this long, so a manager back from a
# restart is found again well inside a lease (keepalives go every half lease).
RETRY_MAX_S = 5.0


async def run_engine(config: EngineConfig) -> int:
    """The engine's life: one HTTP session, signal handlers, the work loop."""
    structlog.contextvars.bind_contextvars(engine_id=config.engine_id)
    async with aiohttp.ClientSession() as session:
        client = EngineClient(
            session,
            config.manager,
            engine_id=config.engine_id,
            grace_s=config.grace,
            retry_first_s=min(config.poll_interval, RETRY_MAX_S),
            retry_max_s=min(config.max_poll_interval, RETRY_MAX_S),
            token=config.token,
        )
        engine = Engine(config, client)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, engine.on_signal, signum)
        log.info(
            "engine_started",
            manager=config.manager,
            batch_size=config.batch_size,
            preset=config.preset,
            command=config.command,
            pid=os.getpid(),
        )
        try:
            exit_code = await engine.run()
        except Exception:  # a bug: logged in the JSON stream, where the operator looks
            log.exception("engine_crashed")
            exit_code = EXIT_CANNOT_GO_ON
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    log.info("engine_stopped", exit_code=exit_code, **engine.tally.fields())
    return exit_code
