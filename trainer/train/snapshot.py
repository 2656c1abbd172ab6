"""Snapshots of training state in CPU memory, and the background checkpoint writer.

`freeze` copies a checkpoint's weights and optimizer state to CPU memory (the loop may
step again right after it returns); `BackgroundWriter` writes such a snapshot on its own
thread, at most one write in flight (the next `submit` waits for the previous one).
`capture_rng`/`restore_rng` hold every random stream as tensors and plain values.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ckpt


def to_cpu(obj: Any) -> Any:
    """Deep copy of nested dicts/lists/tuples with every tensor copied to CPU memory."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


class SnapshotBuffers:
    """CPU buffers reused from one snapshot to the next.

    Copying into memory that is already mapped is several times faster than fresh
    clones (no page faults), and pinned buffers let GPU tensors copy asynchronously.
    A snapshot's tensors are only valid until the next `copy`: wait for its write first.
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[Any, ...], torch.Tensor] = {}

    def copy(self, obj: Any, key: tuple[Any, ...] = ()) -> Any:
        if isinstance(obj, torch.Tensor):
            buf = self._bufs.get(key)
            if buf is None or buf.shape != obj.shape or buf.dtype != obj.dtype:
                pin = obj.is_cuda and torch.cuda.is_available()
                buf = self._bufs[key] = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=pin)
            return buf.copy_(obj.detach(), non_blocking=obj.is_cuda)
        if isinstance(obj, dict):
            return {k: self.copy(v, (*key, k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.copy(v, (*key, i)) for i, v in enumerate(obj))
        return obj

    def capture(self, obj: Any, key: str) -> Any:
        out = self.copy(obj, (key,))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # the non-blocking copies are complete
        return out


def seed_everything(seed: int) -> None:
    """One seed for every random stream a run uses: torch (CPU and every CUDA device), numpy's
    global generator and Python's `random` (what user code such as custom augmentations reaches for)."""
    torch.manual_seed(seed)  # CUDA too
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


LARGE_PARTS = ("model_state_dict", "optimizer_state_dict")


def live_weights(model: torch.nn.Module) -> dict[str, Any]:
    """The bare model's state dict: parameters still the live tensors (`freeze` copies them
    later), buffers copied now, since the next forward pass may change them."""
    bare = unwrap(model)
    weights = bare.state_dict()
    for name, _ in bare.named_buffers():
        if name in weights:
            weights[name] = to_cpu(weights[name])
    return weights


def freeze(state: dict[str, Any], buffers: SnapshotBuffers | None = None) -> dict[str, Any]:
    """Copy the live tensors of a checkpoint's large parts into CPU memory (before the next
    optimizer step may change them)."""
    out = dict(state)
    for key in LARGE_PARTS:
        out[key] = buffers.capture(state[key], key) if buffers else to_cpu(state[key])
    return out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


@contextlib.contextmanager
def deferred_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while a critical write runs; re-deliver them afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda sig, _f: pending.append(sig)) for s in signals}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending:
            signal.raise_signal(sig)


SavedCallback = Callable[[Path, dict[str, Any]], None]
ErrorCallback = Callable[[Path, BaseException], None]


class BackgroundWriter:
    """Writes checkpoint snapshots on one worker thread, one at a time."""

    def __init__(self, on_saved: SavedCallback | None = None, on_error: ErrorCallback | None = None,
                 save: Callable[[Path, dict[str, Any]], Path] | None = None) -> None:
        self._on_saved = on_saved
        self._on_error = on_error
        self._save = save or ckpt.save_checkpoint
        self._thread: threading.Thread | None = None
        self._copied: threading.Event | None = None
        self.last_error: BaseException | None = None

    def submit(self, path: str | Path, state: dict[str, Any],
               freeze: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """Write `state` to `path` on the writer thread; waits for a write still in flight.

        With `freeze`, the thread first turns `state` into CPU copies; until `wait_copied()`
        returns, the tensors it references must not change (no optimizer step).
        """
        self.wait()
        self._copied = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(Path(path), state, freeze),
                                        name="checkpoint-writer", daemon=True)
        self._thread.start()

    def wait_copied(self) -> None:
        """Return once the snapshot in flight no longer reads the live tensors."""
        if self._copied is not None:
            self._copied.wait()

    def _run(self, path: Path, state: dict[str, Any], freeze: Callable[..., Any] | None) -> None:
        try:
            if freeze is not None:
                state = freeze(state)
        except BaseException as exc:
            self._failed(path, exc)
            return
        finally:
            self._copied.set()
        self._write(path, state)

    def save_now(self, path: str | Path, state: dict[str, Any]) -> Path:
        """Synchronous write (emergency): waits for the in-flight one, holds signals while writing."""
        self.wait()
        with deferred_signals():
            self._write(Path(path), state)
        if self.last_error is not None:
            raise self.last_error
        return Path(path)

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _write(self, path: Path, state: dict[str, Any]) -> None:
        self.last_error = None
        try:
            self._save(path, state)
        except BaseException as exc:  # reported, never lost silently
            self._failed(path, exc)
            return
        if self._on_saved is not None:
            self._on_saved(path, state)

    def _failed(self, path: Path, exc: BaseException) -> None:
        self.last_error = exc
        if self._on_error is not None:
            self._on_error(path, exc)

    close = wait
