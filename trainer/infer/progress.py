"""Progress over frames: a tqdm bar on a terminal; elsewhere (a log, a pipe, CI) a plain line every few seconds.

Both say the frames done of the total, frames/s and the time left, so a long evaluation is never silent
and a log is never flooded with one line per frame.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO

from tqdm import tqdm

__all__ = ["FrameProgress"]

PLAIN_EVERY_S = 5.0  # seconds between plain lines


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class FrameProgress:
    """`update()` once per frame; `write()` a message above the bar; `close()` ends with a summary line."""

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None,
                 every_s: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.total, self.label, self.part = stream or sys.stderr, total, label, ""
        self.every_s, self.clock = every_s, clock
        self.done, self.start = 0, clock()
        self.last_line = self.start
        self.bar = tqdm(total=total, unit="frame", desc=label, file=self.stream, dynamic_ncols=True) \
            if self.stream.isatty() else None

    def describe(self, part: str) -> None:
        """What is being done now (a clip's name)."""
        self.part = part
        if self.bar is not None:
            self.bar.set_description(f"{self.label} {part}")

    def update(self, frames: int = 1) -> None:
        self.done += frames
        if self.bar is not None:
            self.bar.update(frames)
        elif self.clock() - self.last_line >= self.every_s:
            self._line()

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self, summary: bool = True) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done and summary:
            self._line(final=True)

    def _line(self, final: bool = False) -> None:
        now = self.clock()
        self.last_line = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        if final:
            line = f"{self.label}: {count} frames in {_clock(elapsed)}, {rate:.2f} frames/s"
        else:
            eta = _clock(max(0, self.total - self.done) / rate) if self.total and rate > 0 else "?"
            line = f"{f'{self.label} {self.part}'.strip()}: {count} frames, {rate:.2f} frames/s, ETA {eta}"
        print(line, file=self.stream, flush=True)

    def __enter__(self) -> FrameProgress:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.close(summary=exc_type is None)  # no summary line under an error's
