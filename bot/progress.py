"""A text progress bar for long commands (on a terminal only)."""

from __future__ import annotations

import time
from typing import TextIO

WIDTH = 30
EVERY_SECONDS = 0.2


class ProgressBar:
    """``[#########.....]  45%  450,000/1,000,000 rows  12 s``, redrawn in place at most five times a second."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self._total = total
        self._stream = stream
        self._started = time.monotonic()
        self._drawn = 0.0
        self._done = 0

    def __call__(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if now - self._drawn >= EVERY_SECONDS or done >= self._total:
            self._drawn = now
            self._stream.write("\r" + self.line(done, now - self._started))
            self._stream.flush()

    def line(self, done: int, seconds: float) -> str:
        share = min(done / self._total, 1.0) if self._total else 1.0
        filled = round(WIDTH * share)
        return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%}  {done:,}/{self._total:,} rows  {seconds:.0f} s"

    def close(self) -> None:
        self(self._done)
        self._stream.write("\n")
        self._stream.flush()
