"""The reference engine, `reactor engine`: a client of the seed's wire protocol.

Owns the HTTP client with its retry policy, the loop over batches (ask, run the command
under a lease, report), the batch's subprocess, and the engine process's life.

May import: the standard library, `reactor.core`, `reactor.settings`, `reactor.runtime`
and `reactor.engine`, and aiohttp and structlog. Never `reactor.serve` or `reactor.disk`:
an engine knows the service only through the wire protocol, and the run folders only
through the paths the service hands out.
"""
