"""The input videos: found in files and folders, named, probed, and split into train and val by video."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decode import DecodeError, VideoInfo, probe
from .errors import PrepareError

__all__ = ["Video", "find_videos", "name_videos", "split_by_video", "probe_all", "VIDEO_SUFFIXES"]

# Searched for inside folders; a file named on the command line is tried whatever its suffix.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mkv .mov .avi .webm .mpg .mpeg .ts .m2ts .mts .wmv .flv .y4m .ogv .3gp .mxf".split()
)


@dataclass
class Video:
    path: Path
    name: str  # output name: the file's stem, made unique and safe
    info: VideoInfo
    split: str = "train"


def find_videos(inputs: list[str]) -> list[Path]:
    """Files as given, and video files found recursively in folders, in a stable order, no repeats."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.exists():
            found.append(path)
        else:
            raise PrepareError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def name_videos(paths: list[Path]) -> list[str]:
    """Safe, unique clip-name prefixes: the stem, with -2, -3 ... for repeats (in input order)."""
    names, seen = [], set()
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "video"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        names.append(name)
    return names


def probe_all(paths: list[Path]) -> tuple[list[Video], dict[str, str]]:
    """(usable videos, {path: reason} for files that cannot be opened as video)."""
    videos, bad = [], {}
    for path, name in zip(paths, name_videos(paths), strict=True):
        try:
            videos.append(Video(path, name, probe(path)))
        except DecodeError as exc:
            bad[str(path)] = str(exc)
    return videos, bad


def split_by_video(videos: list[Video], fraction: float, seed: int) -> None:
    """Mark round(fraction * n) videos (at least 1, at most n - 1) as validation, chosen by the seed."""
    if fraction <= 0 or not videos:
        return
    if len(videos) < 2:
        raise PrepareError(
            f"only one usable video ({videos[0].path.name}): the train/validation split is by video, "
            "so give at least 2 videos (or --val-fraction 0 for a training set only)"
        )
    n_val = min(len(videos) - 1, max(1, round(fraction * len(videos))))
    order = np.random.default_rng(seed).permutation(len(videos))
    for i in order[:n_val]:
        videos[int(i)].split = "val"
