"""Engines on a batch scheduler: the fleet that keeps engine jobs on Slurm sized by the
work (`fleet`), and the Slurm commands it runs (`slurm`).

Owns the fleet's view of its jobs and the text of Slurm's commands and answers. The
decisions are `reactor.core.fleet`'s; the work they follow comes from the service
(`reactor.serve`), which starts the fleet and shows it.

May import: the standard library, structlog, `reactor.core`, `reactor.settings`; never
`reactor.serve` (which imports this).
"""
