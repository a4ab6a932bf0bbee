"""Throughput: files done since start, and the recent rate that an ETA should follow.

A rate since start says little about the present: after an hour at 40 files/min, with
half the engines gone, it still says 40. `Throughput` also keeps what was done
in the last `window_s` seconds, in `BUCKETS` buckets, so it costs O(1) per completion
and O(BUCKETS) memory whatever the run's length. Pure: every method takes the time.
"""

from __future__ import annotations

from collections import deque

DEFAULT_WINDOW_S = 300.0
BUCKETS = 60  # the window's resolution: 5 s buckets for a 5 min window
# A rate over a few seconds is noise: the first job done 0.5 s after a restart must not
# promise 20 files/s. Spans shorter than this count as this long.
MIN_SPAN_S = 10.0


class Throughput:
    """Files done since `started_at`, and per second over the last `window_s` seconds."""

    def __init__(self, started_at: float, window_s: float = DEFAULT_WINDOW_S) -> None:
        if window_s <= 0:
            msg = f"window_s must be more than 0, not {window_s}"
            raise ValueError(msg)
        self.started_at = started_at
        self.window_s = window_s
        self.files_done = 0
        self._bucket_s = window_s / BUCKETS
        self._buckets: deque[tuple[int, int]] = deque()  # (bucket number, files), oldest first
        self._in_buckets = 0

    def record(self, now: float, files: int) -> None:
        """`files` were done at `now`."""
        self.files_done += files
        bucket = int(now // self._bucket_s)
        if self._buckets and self._buckets[-1][0] == bucket:
            self._buckets[-1] = (bucket, self._buckets[-1][1] + files)
        else:
            self._buckets.append((bucket, files))
        self._in_buckets += files
        self._drop_before(now)

    def since_start_per_s(self, now: float) -> float:
        return self.files_done / self._span(now - self.started_at)

    def recent_per_s(self, now: float) -> float:
        """Files per second over the last `window_s` seconds (or since start, if later)."""
        self._drop_before(now)
        return self._in_buckets / self._span(min(self.window_s, now - self.started_at))

    @staticmethod
    def _span(seconds: float) -> float:
        return max(seconds, MIN_SPAN_S)

    def _drop_before(self, now: float) -> None:
        """Forget buckets that lie wholly before the window."""
        first_kept = int((now - self.window_s) // self._bucket_s)
        while self._buckets and self._buckets[0][0] < first_kept:
            self._in_buckets -= self._buckets.popleft()[1]
