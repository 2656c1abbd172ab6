"""Checkpoint file names: `checkpoint_step_0000123[_suffix].pth`.

Pure string handling, no torch: the monitor (which never imports torch) uses it.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "STEP_DIGITS",
    "checkpoint_name",
    "checkpoint_type",
    "parse_step",
    "split_name",
]

STEP_DIGITS = 7
LEGACY_EMERGENCY = "checkpoint_emergency.pth"

# Anchored on both ends: temp files (`.checkpoint_step_..tmp`), other extensions and
# names with dots in the suffix are not checkpoints.
_NAME = re.compile(r"checkpoint_step_(\d+)(?:_([A-Za-z0-9][A-Za-z0-9_-]*))?\.pth")
_SUFFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_TYPES = {None: "regular", "best": "best", "emergency": "emergency"}


def checkpoint_name(step: int, suffix: str | None = None) -> str:
    """`checkpoint_step_0000123.pth`; with suffix `emergency`: `..._0000123_emergency.pth`."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"checkpoint step must be an int >= 0, got {step!r}")
    name = f"checkpoint_step_{step:0{STEP_DIGITS}d}"
    if suffix:
        suffix = suffix.lstrip("_")
        if not _SUFFIX.fullmatch(suffix):
            raise ValueError(
                f"checkpoint suffix {suffix!r} must be letters, digits, '_' or '-' "
                "(starting with a letter or digit)"
            )
        name += f"_{suffix}"
    return name + ".pth"


def split_name(filename: str | os.PathLike[str]) -> tuple[int, str] | None:
    """(step, type) of a checkpoint file name (a path's last part is used), else None."""
    base = os.path.basename(os.fspath(filename))
    if base == LEGACY_EMERGENCY:
        return 0, "emergency"
    match = _NAME.fullmatch(base)
    if match is None:
        return None
    suffix = match.group(2)
    return int(match.group(1)), _TYPES.get(suffix, suffix)


def parse_step(filename: str | os.PathLike[str]) -> int | None:
    """The step in a checkpoint name; None for anything that is not a checkpoint name."""
    parts = split_name(filename)
    return None if parts is None else parts[0]


def checkpoint_type(filename: str | os.PathLike[str]) -> str | None:
    """'regular' (no suffix), 'best', 'emergency', any other suffix as given; None if no checkpoint."""
    parts = split_name(filename)
    return None if parts is None else parts[1]
