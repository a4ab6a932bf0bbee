"""The pure core: what a run is, and every rule about how it changes.

Owns the records of files, jobs and engines and the one state machine that changes them
(`state.RunState`), the retry and benching policy, the names that become paths, the
throughput window, the end-of-run rules, the filesystem-event types with their pure
filters, the status snapshot, and how a client reads the service's error answers.
Everything that affects the state machine lives here.

May import: the standard library and `reactor.core`, nothing else. No I/O, no clock
reads, no randomness: the time comes in as `now`, job ids come from the caller, and
adapters around the core (`reactor.disk`, `reactor.serve`) do the rest.
"""
