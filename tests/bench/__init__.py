"""Benchmarks: restart, ingest latency, API throughput and memory, the reading of
engines' reads (`qc`), long-poll beside polling (`wait`) and what open dashboards cost
(`dashboard`), each measured side by side
with the floor, ceiling or baseline this machine allows for the same work, in the same
run, and reported as a ratio or a difference (absolute times on shared machines drift).

    python -m tests.bench                 # everything, full sizes (also `make bench`)
    python -m tests.bench --quick         # tiny sizes: checks the harness, not the service
    python -m tests.bench --parts restart,api --json bench.json

Not part of `make test` (minutes, and timings are not assertions);
tests/system/test_bench_smoke.py runs `--quick` so the harness cannot rot. Modules:

- `trees`     cached run folders of 10^4-10^6 hardlinked `.pod5` files, with jobs in flight
- `servers`   the processes under test: `reactor serve`, the bare handler, the floors
- `client`    the load client (aiohttp, N concurrent workers, bounded by count and time)
- `readsets`  cached FASTQ, gzip FASTQ and unaligned BAM of dorado's reads, ~1 GB each
- `restart`, `ingest`, `api`, `durability`, `host`, `qc`, `wait`, `dashboard`   the
  trials; `figures` the table and its targets
- `bare`, `scanfloor`, `watchfloor`   the floor/ceiling programs, each run as a subprocess
- `stamp`     the `wait` trial's engine command: notes its start, then basecalls
"""
