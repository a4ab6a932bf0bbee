"""The disk: reactor's records and the run folders, everything read or written there.

Owns the journal (each state change as crash-safe steps: reactor's records in
`OUTPUTDIR/.reactor`, renames of the job folders), the migration of older runs,
recovery (the run rebuilt from disk alone after a crash), the run-complete marker, the
POD5 signature check and the search for MinKNOW's stop file. Synchronous: callers
decide on which thread it runs.

May import: the standard library, `reactor.core` and `reactor.disk`.
"""
