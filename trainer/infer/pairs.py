"""The GT and LR frames `trainer.evaluate` measures, found, read and paired one frame at a time.

GT is a root of clip folders (ROOT/CLIP/*.png), one frame folder or a video file; LR comes from a
path of the same structure (paired by clip name) or is made from each GT frame by a degradation.
Nothing here holds more than the frame it yields, so a clip's length costs no memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np

from trainer.data.images import degrade, read_rgb
from trainer.infer.video import import_av
from trainer.media import frame_files

__all__ = ["Clip", "EvaluateError", "Frame", "clip_frames", "count_frames", "find_clips", "pair_lr", "read_frames"]


class EvaluateError(ValueError):
    """What is wrong with the data, the checkpoint or the options, in one line."""


@dataclass
class Clip:
    name: str
    source: Path  # a frame folder or a video file


def find_clips(path: Path) -> list[Clip]:
    """A video file or a frame folder is one clip; a folder of frame folders is one clip each."""
    if path.is_file():
        return [Clip(path.stem, path)]
    if not path.is_dir():
        raise EvaluateError(f"{path}: no such file or folder")
    if frame_files(path):
        return [Clip(path.name, path)]
    clips = [Clip(d.name, d) for d in sorted(path.iterdir()) if d.is_dir() and frame_files(d)]
    if not clips:
        raise EvaluateError(f"{path}: no frames (expected ROOT/CLIP/*.png, a folder of PNG/JPG frames or a video)")
    return clips


def _decode_video(path: Path) -> Iterator[np.ndarray]:
    av = import_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EvaluateError(f"{path}: no video stream")
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise EvaluateError(f"{path}: cannot read it as a video ({exc})") from None


def count_frames(source: Path) -> int | None:
    """A frame folder's frame count, or what a video's header announces (None: it does not say)."""
    if source.is_dir():
        return len(frame_files(source))
    av = import_av()
    try:
        with av.open(str(source)) as container:
            return container.streams.video[0].frames or None if container.streams.video else None
    except (av.FFmpegError, UnicodeDecodeError):
        return None  # reading it says what is wrong


def read_frames(source: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(frame name without suffix, uint8 [H, W, 3]) of a frame folder or a video file, one at a time."""
    if source.is_dir():
        frames: Iterable[tuple[str, np.ndarray]] = ((f.stem, read_rgb(f)) for f in frame_files(source))
    else:
        frames = ((f"{i:08d}", a) for i, a in enumerate(_decode_video(source)))
    size = None
    for name, frame in frames:
        size = size or frame.shape[:2]
        if frame.shape[:2] != size:
            raise EvaluateError(f"{source}: frames differ in size ({size[1]}x{size[0]}, then {name} is "
                                f"{frame.shape[1]}x{frame.shape[0]})")
        yield name, frame
    if size is None:
        raise EvaluateError(f"{source}: no frames")


def pair_lr(gt_clips: list[Clip], lr_clips: list[Clip]) -> list[Clip]:
    """The LR clip of each GT clip: by name, or the only one with the only one."""
    if len(gt_clips) == 1 and len(lr_clips) == 1:
        return lr_clips
    by_name = {c.name: c for c in lr_clips}
    missing = [c.name for c in gt_clips if c.name not in by_name]
    if missing:
        raise EvaluateError(f"--lr has no clip named {', '.join(missing)} (it has {', '.join(sorted(by_name))})")
    return [by_name[c.name] for c in gt_clips]


def _fit(name: str, gt: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray:
    """GT [H, W, 3] cropped to LR x scale; a mismatched size is an error."""
    (h, w), (lh, lw) = gt.shape[:2], lr.shape[:2]
    if (h // scale, w // scale) != (lh, lw):
        raise EvaluateError(f"clip {name}: LR frames are {lw}x{lh}, but GT {w}x{h} at x{scale} needs "
                            f"{w // scale}x{h // scale}")
    return gt[: lh * scale, : lw * scale]


def _count_mismatch(name: str, gt_count: int | None, lr_count: int | None) -> EvaluateError:
    return EvaluateError(f"clip {name}: {gt_count} GT frames but {lr_count} LR frames")


@dataclass
class Frame:
    name: str
    gt: np.ndarray  # uint8 [H, W, 3], H and W multiples of the scale
    lr: np.ndarray  # uint8 [H / scale, W / scale, 3]


def clip_frames(name: str, gt: Path, lr: Path | None, scale: int, how: str) -> Iterator[Frame]:
    """A clip's (GT, LR) frame pairs, one at a time: LR from `lr`, or made from GT by `how`
    (GT first cropped to a multiple of the scale, as BasicSR does)."""
    if lr is None:
        for frame_name, frame in read_frames(gt):
            frame = frame[: frame.shape[0] // scale * scale, : frame.shape[1] // scale * scale]
            yield Frame(frame_name, frame, degrade(frame[None], scale, how)[0])
        return
    if gt.is_dir() and lr.is_dir():  # known before any work
        gt_count, lr_count = count_frames(gt), count_frames(lr)
        if gt_count != lr_count:
            raise _count_mismatch(name, gt_count, lr_count)
    gts, lrs, done = read_frames(gt), read_frames(lr), 0
    for g, low in zip_longest(gts, lrs):
        if g is None or low is None:  # one stream ended first: count the other's rest
            raise _count_mismatch(name, done + (g is not None) + sum(1 for _ in gts),
                                  done + (low is not None) + sum(1 for _ in lrs))
        yield Frame(g[0], _fit(name, g[1], low[1], scale), low[1])
        done += 1
