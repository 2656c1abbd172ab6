"""Atomic save, safe load and tensor-free metadata of one checkpoint file.

torch is imported inside the functions that need it, so `import ckpt` stays light.
"""

from __future__ import annotations

import collections
import errno
import os
import re
import secrets
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ckpt.errors import CheckpointError, UnsafeCheckpointError
from ckpt.naming import parse_step
from ckpt.safe_pickle import TensorRef, read_scalar, read_structure

__all__ = [
    "FORMAT_VERSION",
    "load_checkpoint",
    "read_metadata",
    "remove_stale_temp_files",
    "save_checkpoint",
    "temp_name",
]

FORMAT_VERSION = 1
_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None))
_MAPPINGS = (dict, collections.OrderedDict, collections.Counter)
_SEQUENCES = (list, tuple, set, frozenset)


def temp_name(filename: str) -> str:
    """Temp file beside the target: hidden, `.tmp`, pid inside; parse_step rejects it."""
    return f".{filename}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _unsafe_part(value: Any, where: str) -> str | None:
    """The first part of `value` that torch.load(weights_only=True) would refuse."""
    import torch

    kind = type(value)
    if kind in _PLAIN or kind in (torch.Tensor, torch.nn.Parameter, torch.Size):
        return None
    if kind in (torch.dtype, torch.device, torch.layout):
        return None
    if kind in _MAPPINGS:
        for key, item in value.items():
            found = _unsafe_part(key, f"{where} key") or _unsafe_part(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if kind in _SEQUENCES:
        for index, item in enumerate(value):
            found = _unsafe_part(item, f"{where}[{index}]")
            if found:
                return found
        return None
    return f"{where} is a {kind.__module__}.{kind.__qualname__}"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms that cannot open a directory (Windows)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_temp(tmp: Path, state: dict) -> None:
    import torch

    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())


def _reason(exc: BaseException) -> str:
    """The OS error behind a failed write, also when torch re-raised it as a RuntimeError
    (a full disk can surface as "unexpected pos 64 vs 0" from torch's zip writer)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return f"{cause.strerror} (errno {cause.errno})"
        cause = cause.__cause__ or cause.__context__
    return str(exc)


def save_checkpoint(path: str | os.PathLike[str], state: dict) -> Path:
    """Write `state` to `path` atomically: a crash leaves the old state or the whole new file.

    Bytes go to a temp file in the same folder, are fsynced, renamed over `path`
    with os.replace, then the folder is fsynced. On failure the temp file is
    removed, other files are untouched and CheckpointError says what went wrong.
    """
    path = Path(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint state must be a dict, got {type(state).__name__}")
    state = {"format_version": FORMAT_VERSION, **state}
    state.setdefault("timestamp", datetime.now(UTC).isoformat(timespec="seconds"))
    problem = _unsafe_part(state, "state")
    if problem:
        raise CheckpointError(
            f"cannot save {path.name}: {problem}; a checkpoint may hold only tensors, dicts, "
            "lists, tuples, str, int, float, bool and None (convert it, e.g. with .tolist())"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_name(path.name)
    try:
        _write_temp(tmp, state)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        raise CheckpointError(
            f"could not save checkpoint {path}: {_reason(exc)}; earlier checkpoints are untouched"
        ) from exc
    return path


def load_checkpoint(
    path: str | os.PathLike[str], *, allow_unsafe: bool = False, map_location: Any = "cpu"
) -> dict:
    """Load with torch.load(weights_only=True); CheckpointError if unreadable or unsafe.

    A file torch refuses gets a one-line reason from our own reader (never torch's advice
    to retry with weights_only=False). `allow_unsafe=True` loads a file that pickles
    arbitrary objects (it runs code from the file, so only for files you trust) and warns.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch reports damage with UnpicklingError, RuntimeError, EOFError, ...
        refused = _refusal(path, exc, map_location)
        if not allow_unsafe or not isinstance(refused, UnsafeCheckpointError):
            raise refused from None
        warnings.warn(f"loading {path} with full unpickling (allow_unsafe=True)", stacklevel=2)
        state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def _refusal(path: Path, exc: Exception, map_location: Any) -> CheckpointError:
    """Why torch could not load `path`, in one line of our own words: its real cause. Only a file
    that pickles other objects than tensors and plain containers is "unsafe"."""
    import pickle

    if path.stat().st_size == 0:
        return CheckpointError(f"checkpoint {path} is empty (0 bytes): not a checkpoint")
    try:
        read_structure(str(path))
    except UnsafeCheckpointError as unsafe:
        return UnsafeCheckpointError(f"checkpoint {path} is refused: {_one_line(unsafe)}; loading it "
                                     "would run code from the file (not a checkpoint of this project?)")
    except CheckpointError as damage:
        return CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint: {_one_line(damage)}")
    if isinstance(exc, OSError):
        return CheckpointError(f"cannot read checkpoint {path}: {_reason(exc)}")
    if isinstance(exc, pickle.UnpicklingError):  # torch's weights-only unpickler said no
        return UnsafeCheckpointError(f"checkpoint {path} holds objects that torch's safe loader refuses "
                                     f"({_one_line(exc)}); it was not loaded")
    if "deserialize object on" in str(exc):  # e.g. saved on a GPU, loaded on a CPU box with map_location=None
        return CheckpointError(f"checkpoint {path} cannot be placed on map_location={map_location!r} here: "
                               f"{_one_line(exc).split('. ')[0]}; map_location='cpu' (the default) always works")
    return CheckpointError(f"checkpoint {path} could not be loaded: {type(exc).__name__}: {_one_line(exc)}")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _plain_metrics(path: Path, metrics: Any) -> dict[str, float | None]:
    if not isinstance(metrics, dict):
        return {}
    plain: dict[str, float | None] = {}
    for key, value in metrics.items():
        if isinstance(value, TensorRef):
            plain[str(key)] = read_scalar(str(path), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            plain[str(key)] = float(value)
        elif value is None:
            plain[str(key)] = None
    return plain


def read_metadata(path: str | os.PathLike[str]) -> dict:
    """step, epoch, type, timestamp, metrics, ... of a checkpoint, WITHOUT reading its tensors.

    Raises UnsafeCheckpointError (arbitrary pickled objects) or CheckpointError (damage).
    """
    path = Path(path)
    try:
        obj = read_structure(str(path))
    except CheckpointError as exc:
        raise type(exc)(f"checkpoint {path} cannot be used: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    step = obj.get("step")
    return {
        "format_version": obj.get("format_version"),
        "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
        "epoch": obj.get("epoch"),
        "type": obj.get("type"),
        "timestamp": obj.get("timestamp"),
        "model_name": obj.get("model_name"),
        "model_kwargs": obj.get("model_kwargs"),
        "config": obj.get("config"),
        "metrics": _plain_metrics(path, obj.get("metrics")),
        "init_from": obj.get("init_from") if isinstance(obj.get("init_from"), dict) else None,
        "keys": sorted(str(key) for key in obj),
    }


_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove temp files that a killed save left behind (their writer's pid is gone)."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for item in directory.iterdir():
        match = _TEMP.fullmatch(item.name)
        if match and parse_step(match["name"]) is not None and not _alive(int(match["pid"])):
            item.unlink(missing_ok=True)
            removed.append(item)
    return removed
