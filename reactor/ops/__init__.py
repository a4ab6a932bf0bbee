"""Operator tools: what a person runs beside the service, on the sequencer host.

Owns the client of a running service that `reactor status` and `reactor requeue` share
(which service, which token, one line for a person when it fails), the status view
(`reactor status`), the host checks (`reactor check`), and the import of the seed
service's JSON into settings files (`reactor config import-seed`), with the TOML writer
it needs.

May import: the standard library, `reactor.core`, `reactor.disk`, `reactor.settings`,
`reactor.cluster.slurm` (the fleet's Slurm commands, which `reactor check` tries) and
`reactor.ops`. Never aiohttp, watchdog or prometheus_client: these tools start fast
and run where the service's dependencies need not be importable.
"""
