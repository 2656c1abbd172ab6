"""Progress: a tqdm bar with ETA on a terminal, one plain line per finished video otherwise (logs, CI)."""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    def __init__(self, total_frames: int, videos: int, *, tty: bool) -> None:
        self.videos, self.done = videos, 0
        self.bar = tqdm(total=total_frames or None, unit="frame", unit_scale=True, dynamic_ncols=True,
                        file=sys.stderr, desc="prepare") if tty else None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def advance(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.update(frames)

    def finished(self, name: str, result: dict) -> None:
        self.done += 1
        if "error" in result:
            line = f"{name}: skipped ({result['error']})"
        else:
            line = f"{name}: {result['clips']} clips ({result['split']}) from {result['frames']} frames"
        line = f"[{self.done}/{self.videos}] {line}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)
