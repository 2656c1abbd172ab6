"""`prune`: keep the last K regular, the N best and the newest emergency checkpoints.

Only readable checkpoints of the types regular/best/emergency are ever removed.
Never removed: protected paths (the one a run resumed from), targets of symlinks
in the folder (the original's `checkpoint_best.pth`), the newest good checkpoint, the
newest one with finite metrics (a late loss spike must not cost every usable checkpoint),
corrupt or unsafe files (a person should look at those), checkpoints with other
suffixes (`_manual`, ...) and any file whose name is not a checkpoint name.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from ckpt.errors import CheckpointError
from ckpt.listing import is_good, is_usable, list_checkpoints

KEEP_LAST = 3  # regular checkpoints kept (the trainer's checkpoint.keep_last, `python -m ckpt prune --keep-last`)
KEEP_BEST = 2  # best by quality kept (checkpoint.keep_best, --keep-best)

__all__ = ["prune"]

_PRUNABLE = ("regular", "best", "emergency")


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


def _link_targets(directory: Path) -> set[str]:
    return {_real(item) for item in directory.iterdir() if item.is_symlink()}


def _newest(entries: list[dict], kind: str, count: int) -> list[dict]:
    chosen = [e for e in entries if e["type"] == kind]
    return chosen[-count:] if count else []


def _best(entries: list[dict], count: int) -> list[dict]:
    """The `count` highest qualities; a non-finite quality ranks below every finite one (never kept)."""
    rated = [e for e in entries if is_usable(e) and e["quality"] is not None]
    rated.sort(key=lambda e: (e["quality"], e["step"]), reverse=True)
    return rated[:count]


def _kept_paths(
    entries: list[dict], *, keep_last: int, keep_best: int, keep_emergency: int
) -> set[str]:
    """Real paths of the listing entries that a prune with these settings keeps."""
    good = [e for e in entries if is_good(e)]
    keep = [e for e in entries if not is_good(e) or e["type"] not in _PRUNABLE]
    keep += good[-1:]  # the newest good checkpoint, always
    keep += [e for e in good if is_usable(e)][-1:]  # and the newest finite one
    keep += _newest(good, "regular", keep_last) + _newest(good, "emergency", keep_emergency)
    keep += _best(good, keep_best)
    return {_real(e["path"]) for e in keep}


def prune(
    directory: str | os.PathLike[str],
    *,
    keep_last: int = KEEP_LAST,
    keep_best: int = KEEP_BEST,
    keep_emergency: int = 1,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Remove old checkpoints of `directory`; returns the removed paths."""
    limits = {"keep_last": (keep_last, 0), "keep_best": (keep_best, 0)}
    limits["keep_emergency"] = (keep_emergency, 1)
    for name, (value, least) in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise CheckpointError(f"{name} must be an int >= {least}, got {value!r}")
    directory = Path(directory)
    entries = list_checkpoints(directory)
    if not entries:
        return []
    keep = _kept_paths(
        entries, keep_last=keep_last, keep_best=keep_best, keep_emergency=keep_emergency
    )
    keep |= {_real(p) for p in protect} | _link_targets(directory)
    removed = []
    for entry in entries:
        if _real(entry["path"]) in keep:
            continue
        try:
            os.remove(entry["path"])
        except FileNotFoundError:
            continue
        except OSError as exc:
            warnings.warn(f"could not remove {entry['path']}: {exc.strerror}", stacklevel=2)
            continue
        removed.append(Path(entry["path"]))
    return removed
