"""One video to clips (or patches): the job a worker runs, in one decode pass with a bounded buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decode import DecodeError, stream_frames
from .options import PrepareOptions
from .shots import Windows
from .writers import ClipWriter, PatchWriter

__all__ = ["Job", "prepare_video", "selection_targets"]

TICK_EVERY = 16  # frames between progress reports


@dataclass(frozen=True)
class Job:
    path: str
    name: str
    split: str
    estimate: int  # estimated frame count of the source (0 = unknown)
    note: str | None  # colour conversion, from the probe
    threads: int = 1  # for PNG compression (does not change the output)


def selection_targets(frames: int, wanted: int) -> list[int]:
    """First frame index from which each of `wanted` clips may start, spread evenly over the video."""
    return [j * frames // wanted for j in range(wanted)]


def _writer(out: Path, options: PrepareOptions, job: Job) -> ClipWriter | PatchWriter:
    if options.layout == "patches":
        return PatchWriter(out, job.split, options.frames, options.scale, options.patch_size)
    return ClipWriter(out, job.split, options.format, job.threads)


def _counted(frames: Iterator[np.ndarray], seen: list[int], tick: Callable[[int], None] | None):
    for frame in frames:
        seen[0] += 1
        if tick is not None and seen[0] % TICK_EVERY == 0:
            tick(TICK_EVERY)
        yield frame


class _WriteBehind:
    """Writes clips on one background thread while the next window decodes (file writes and PNG
    compression release the GIL). At most one clip waits, so memory stays bounded."""

    def __init__(self, write: Callable[[str, list[np.ndarray]], int]) -> None:
        self.write, self.items = write, 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="prepare-write")
        self.pending: Future | None = None

    def submit(self, name: str, frames: list[np.ndarray]) -> None:
        self.wait()
        self.pending = self.pool.submit(self.write, name, frames)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self.items += pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown()


def prepare_video(job: Job, options: PrepareOptions, out: Path, tick: Callable[[int], None] | None = None) -> dict:
    """Write the video's clips; returns its manifest entry (counts, skipped frames by reason, note or error)."""
    writer = _writer(out, options, job)
    windows = Windows(options.frames, cut=options.cut_threshold, black=options.black_threshold,
                      frozen=options.frozen_threshold, blur=options.blur_threshold)
    wanted = options.clips_per_video
    targets = selection_targets(-(-job.estimate // options.stride), wanted) if wanted else []
    seen, clips, behind = [0], 0, _WriteBehind(writer.write)
    try:
        for start, frames in windows(_counted(stream_frames(Path(job.path), options.stride), seen, tick)):
            if wanted and start < targets[clips]:
                windows.skipped["unselected"] += len(frames)
                continue
            behind.submit(f"{job.name}_{clips:04d}", frames)
            clips += 1
            if clips == wanted:
                break  # the rest of the video is not needed
    except DecodeError as exc:
        behind.close()
        writer.remove(job.name)
        return {"source": job.path, "split": job.split, "error": str(exc)}
    finally:
        behind.close()
    if tick is not None:
        tick(seen[0] % TICK_EVERY)
    return {"source": job.path, "split": job.split, "clips": clips, "items": behind.items, "frames": seen[0],
            "skipped": windows.skipped, "note": job.note}
