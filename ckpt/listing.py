"""`list_checkpoints`: every checkpoint of a folder with its metadata, oldest first.

Metadata comes from `read_metadata` (data.pkl only), so listing costs the same
for 1 MB and 1 GB files. A damaged file is listed with status 'corrupt', a file
that pickles arbitrary objects with status 'unsafe'; neither breaks the listing.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from ckpt.errors import CheckpointError, UnsafeCheckpointError
from ckpt.naming import split_name
from ckpt.store import read_metadata

__all__ = ["describe_checkpoint", "is_good", "is_usable", "list_checkpoints", "size_mb", "sort_key"]

_TYPE_ORDER = {"regular": 0, "best": 1, "emergency": 2}


def size_mb(n_bytes: int) -> float:
    """A checkpoint's size as every listing and event gives it: MiB (2**20 bytes), 2 decimals."""
    return round(n_bytes / 2**20, 2)


def _local_datetime(value: Any) -> datetime | None:
    """A naive local datetime from an ISO string or unix seconds; None if neither."""
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(value)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return parsed.astimezone().replace(tzinfo=None) if parsed.tzinfo else parsed


def _number(metrics: dict, *keys: str, unit: bool = False) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            continue
        if unit and not 0.0 <= value <= 1.0:
            continue
        return value
    return None


def _apply_metadata(entry: dict, meta: dict) -> None:
    if meta["step"] is not None and meta["step"] >= 0:
        entry["step"] = meta["step"]
    metrics = meta["metrics"]
    entry["finite"] = all(value is None or math.isfinite(value) for value in metrics.values())
    entry["quality"] = _number(metrics, "quality", "ki_quality", unit=True)
    entry["loss"] = _number(metrics, "loss", "val_loss")
    entry["psnr"] = _number(metrics, "psnr")
    entry["ssim"] = _number(metrics, "ssim")
    entry["epoch"] = meta["epoch"] if isinstance(meta["epoch"], int) else None
    source = meta.get("init_from") or {}
    entry["init_from"] = source.get("name") if isinstance(source.get("name"), str) else None
    stamp = _local_datetime(meta["timestamp"])
    if stamp is not None:
        entry["timestamp"] = stamp


def describe_checkpoint(path: str | os.PathLike[str]) -> dict:
    """The listing entry of one checkpoint file (its name need not be a checkpoint name)."""
    path = Path(path)
    stat = path.stat()
    step, kind = split_name(path.name) or (0, "regular")
    entry: dict[str, Any] = {
        "path": str(path),
        "filename": path.name,
        "step": step,
        "type": kind,
        "quality": None,
        "loss": None,
        "psnr": None,
        "ssim": None,
        "epoch": None,
        "size_mb": size_mb(stat.st_size),
        "timestamp": datetime.fromtimestamp(stat.st_mtime),
        "mtime": stat.st_mtime,
        "status": "ok",
        "error": None,
        "finite": True,  # False when a saved metric (quality, loss, ...) is NaN or infinite
        "init_from": None,  # the model file the run was fine-tuned from (--init-from), by name
    }
    try:
        _apply_metadata(entry, read_metadata(path))
    except UnsafeCheckpointError as exc:
        entry.update(status="unsafe", error=str(exc))
    except CheckpointError as exc:
        entry.update(status="corrupt", error=str(exc))
    entry["date_str"] = entry["timestamp"].strftime("%Y-%m-%d %H:%M")
    return entry


def sort_key(entry: dict) -> tuple:
    """Numeric step, then file time, then type, then name: a stable total order."""
    rank = _TYPE_ORDER.get(entry["type"], len(_TYPE_ORDER))
    return entry["step"], entry["mtime"], rank, entry["filename"]


def is_good(entry: dict) -> bool:
    """A checkpoint that loads safely (not corrupt, not unsafe)."""
    return entry["status"] == "ok"


def is_usable(entry: dict) -> bool:
    """A checkpoint that may be chosen automatically: good, and its metrics are finite
    (a NaN loss or quality means the run had diverged when it was saved)."""
    return is_good(entry) and entry.get("finite", True)  # entries made before the field: finite


def list_checkpoints(directory: str | os.PathLike[str]) -> list[dict]:
    """Every checkpoint file in `directory`, oldest step first; [] if it does not exist."""
    directory = Path(directory)
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory")
    entries = []
    with os.scandir(directory) as found:
        for item in found:
            if split_name(item.name) is None or not item.is_file():
                continue
            try:
                entries.append(describe_checkpoint(item.path))
            except FileNotFoundError:
                continue  # removed while listing
    return sorted(entries, key=sort_key)
