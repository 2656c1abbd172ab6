"""The one error family of the checkpoint library."""

from __future__ import annotations

__all__ = ["CheckpointError", "UnsafeCheckpointError"]


class CheckpointError(Exception):
    """A checkpoint cannot be written, read or chosen; the message says why."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects beyond tensors and plain containers.

    Loading it would run arbitrary code from the file, so it loads only with
    `load_checkpoint(path, allow_unsafe=True)`.
    """
