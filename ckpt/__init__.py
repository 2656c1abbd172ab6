"""Checkpoint library: naming, atomic save, safe load, fast listing, retention, selection.

`ckpt.naming` never imports torch; the rest imports it only inside the functions
that read or write tensors.
"""

from __future__ import annotations

from ckpt.errors import CheckpointError, UnsafeCheckpointError
from ckpt.listing import describe_checkpoint, is_good, list_checkpoints, size_mb
from ckpt.naming import checkpoint_name, checkpoint_type, parse_step
from ckpt.retention import prune
from ckpt.selection import format_table, latest_good, prompt_for_checkpoint, select_checkpoint
from ckpt.store import (
    FORMAT_VERSION,
    load_checkpoint,
    read_metadata,
    remove_stale_temp_files,
    save_checkpoint,
)

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "UnsafeCheckpointError",
    "checkpoint_name",
    "checkpoint_type",
    "describe_checkpoint",
    "format_table",
    "is_good",
    "latest_good",
    "list_checkpoints",
    "load_checkpoint",
    "parse_step",
    "prompt_for_checkpoint",
    "prune",
    "read_metadata",
    "remove_stale_temp_files",
    "save_checkpoint",
    "select_checkpoint",
    "size_mb",
]
