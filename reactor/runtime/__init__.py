"""What the two long-running processes, `reactor serve` and `reactor engine`, share.

Owns logging (one structlog pipeline, JSON lines, journald priorities) and the way both
run commands: in a session of their own, stopped as a group; and giving freed heap
memory back to the system (`heap.py`).

May import: the standard library, structlog, `reactor.core` and `reactor.runtime`.
"""
