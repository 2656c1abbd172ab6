"""Shots and usable windows: a small scene-cut detector and the black / frozen / blurred filters.

Everything works on frames already decoded, one at a time, in one pass, with plain numpy (so the
result is the same on every machine). Each frame is summarised by every 4th pixel of every 4th row
and by colour histograms of those: a hard cut is a jump in histogram distance between two frames
(PySceneDetect's HistogramDetector idea), which camera and object motion barely move.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["FrameStats", "frame_stats", "blur", "Windows", "SKIP_REASONS"]

SKIP_REASONS = ("black", "frozen", "blurred", "shot_end", "unselected")


@dataclass(frozen=True)
class FrameStats:
    sample: np.ndarray  # uint8: every 4th pixel of every 4th row (8th at 720p, 12th at 1080p)
    hist: np.ndarray  # float [3, 16]: each channel's share of pixels in 16 brightness bins
    brightness: float  # mean of the sample, 0-255


def frame_stats(rgb: np.ndarray) -> FrameStats:
    step = max(4, min(rgb.shape[:2]) // 90)
    sample = np.ascontiguousarray(rgb[::step, ::step])
    bins = (sample >> 4) + np.array([0, 16, 32], np.uint8)  # channel c's bins at 16c ... 16c + 15
    hist = np.bincount(bins.ravel(), minlength=48).reshape(3, 16) / (sample.size // 3)
    return FrameStats(sample, hist, float(sample.mean()))


def change(a: FrameStats, b: FrameStats) -> float:
    """Content change between two frames (cuts): the share of pixels whose brightness bin moved,
    mean over the channels, 0-1. Histograms ignore where things are, so motion barely counts."""
    return float(np.abs(a.hist - b.hist).sum() / 6)


def motion(a: FrameStats, b: FrameStats) -> float:
    """Pixel change between two frames (frozen stretches): mean |sample difference|, 0-255."""
    return float(np.abs(a.sample.astype(np.int16) - b.sample).mean())


def _box(a: np.ndarray, axis: int, k: int = 9) -> np.ndarray:
    """Moving average of k samples along one axis (edges repeated)."""
    pad = [(k // 2 + 1, k // 2) if ax == axis else (0, 0) for ax in range(a.ndim)]
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis)
    n = a.shape[axis]
    return (np.take(c, range(k, k + n), axis=axis) - np.take(c, range(n), axis=axis)) / k


def blur(rgb: np.ndarray, region: int = 512) -> float:
    """The no-reference blur measure of Crete et al. (2007), 0 (sharp) to 1 (no detail at all): how
    little of the frame's gradient survives a further 9-pixel blur. It does not depend on contrast.
    Measured on the central `region` square, where the subject usually is (and 4x cheaper at 1080p)."""
    h, w = rgb.shape[:2]
    y, x = max(0, (h - region) // 2), max(0, (w - region) // 2)
    g = rgb[y : y + region, x : x + region, 1].astype(np.float32)
    worst = 0.0
    for axis in (0, 1):
        sharp = np.abs(np.diff(g, axis=axis))
        total = float(sharp.sum())
        kept = float(np.minimum(np.abs(np.diff(_box(g, axis), axis=axis)), sharp).sum())
        worst = max(worst, kept / total if total else 1.0)
    return worst


class Windows:
    """Cuts a stream of frames into consecutive, non-overlapping windows of `size` frames of one shot
    that pass the filters; `skipped` counts the frames left out, by reason (see SKIP_REASONS)."""

    def __init__(self, size: int, *, cut: float, black: float, frozen: float, blur: float) -> None:
        self.size, self.cut, self.black, self.frozen, self.blur = size, cut, black, frozen, blur
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)

    def __call__(self, frames: Iterator[np.ndarray]) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield (index of the window's first frame, its frames)."""
        buf: list[np.ndarray] = []
        stats: list[FrameStats] = []
        prev: FrameStats | None = None
        buf_shape: tuple[int, ...] = ()
        for i, rgb in enumerate(frames):
            now = frame_stats(rgb)
            if prev is not None and (change(prev, now) > self.cut or rgb.shape != buf_shape):
                self.skipped["shot_end"] += len(buf)
                buf, stats = [], []
            prev, buf_shape = now, rgb.shape  # a change of frame size is a cut too
            buf.append(rgb)
            stats.append(now)
            if len(buf) == self.size:
                problem = self.problem(buf, stats)
                if problem:
                    self.skipped[problem] += self.size
                else:
                    yield i + 1 - self.size, buf
                buf, stats = [], []
        self.skipped["shot_end"] += len(buf)

    def problem(self, frames: list[np.ndarray], stats: list[FrameStats]) -> str | None:
        """Why a window is unusable ("black", "frozen", "blurred"), or None."""
        if min(s.brightness for s in stats) < self.black:
            return "black"
        if np.mean([motion(a, b) for a, b in zip(stats[:-1], stats[1:], strict=True)]) < self.frozen:
            return "frozen"
        if blur(frames[len(frames) // 2]) > self.blur:
            return "blurred"
        return None
