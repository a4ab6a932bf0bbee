"""The service, `reactor serve`: the aiohttp app around the core and the journal.

Owns the coordinator (`service.Reactor`: plan in the core, carry it out on disk, commit,
log), the HTTP API and its OpenAPI document, the watchdog bridge, the deadline sweeper,
the end-of-run finisher and `on_complete`'s process, sd_notify, the sockets systemd
passes (socket activation), the Prometheus metrics, the dashboard (`page`, its files in
`dashboard/`, and the status stream, `stream`), and the app's lifecycle
(`app.create_app`). Everything runs on one event loop.

May import: the standard library, `reactor.core`, `reactor.disk`, `reactor.settings`,
`reactor.runtime`, `reactor.cluster` (the fleet it starts) and `reactor.serve`, and
aiohttp, watchdog, prometheus_client and structlog. It is the only room that imports
watchdog or prometheus_client.
"""
