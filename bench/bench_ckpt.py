"""Checkpoint benchmarks: listing cost vs file size, atomic save vs plain torch.save.

Goals: listing 20 x 100 MB takes at most 1.5x listing 20 x 1 MB (metadata only);
the atomic save costs little more than torch.save (the fsyncs are the difference).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ckpt import checkpoint_name, list_checkpoints, load_checkpoint, save_checkpoint

COUNT = 20


def _state(step: int, size_mb: float) -> dict:
    weights = torch.zeros(int(size_mb * 2**20) // 4)
    return {
        "step": step,
        "metrics": {"ki_quality": 0.5, "val_loss": 0.1},
        "timestamp": "2024-01-14T10:23:00",
        "model_state_dict": {f"layer{i}.weight": weights[i::8] for i in range(8)},
    }


def _fill(directory: Path, size_mb: float) -> None:
    for step in range(COUNT):
        torch.save(_state(step, size_mb), directory / checkpoint_name(step * 1000))


def _timings(repeats: int, action: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def _save_fsynced(state: dict, path: Path) -> None:
    with open(path, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())


def bench_listing(root: Path) -> None:
    small, big = root / "small", root / "big"
    small.mkdir()
    big.mkdir()
    _fill(small, 1)
    _fill(big, 100)
    t_small = min(_timings(5, lambda: list_checkpoints(small)))
    t_big = min(_timings(5, lambda: list_checkpoints(big)))
    t_full = min(_timings(1, lambda: [load_checkpoint(e["path"]) for e in list_checkpoints(big)]))
    print(f"list_checkpoints {COUNT} x   1 MB: {t_small * 1e3:8.1f} ms")
    print(f"list_checkpoints {COUNT} x 100 MB: {t_big * 1e3:8.1f} ms")
    print(f"ratio 100 MB / 1 MB             : {t_big / t_small:8.2f}   (goal <= 1.5)")
    print(f"full torch.load of the 100 MB set (the original's listing): {t_full * 1e3:8.1f} ms")


def bench_save(root: Path) -> None:
    state = _state(1, 40)
    target = root / checkpoint_name(1)
    plain = root / "plain.pth"
    t_plain = statistics.median(_timings(5, lambda: torch.save(state, plain)))
    t_synced = statistics.median(_timings(5, lambda: _save_fsynced(state, plain)))
    t_atomic = statistics.median(_timings(5, lambda: save_checkpoint(target, state)))
    print(f"torch.save 40 MB (no fsync)     : {t_plain * 1e3:8.1f} ms")
    print(f"torch.save 40 MB + fsync        : {t_synced * 1e3:8.1f} ms")
    print(f"save_checkpoint 40 MB (atomic)  : {t_atomic * 1e3:8.1f} ms")
    print(f"ratio atomic / plain            : {t_atomic / t_plain:8.2f}")
    print(f"ratio atomic / plain + fsync    : {t_atomic / t_synced:8.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_ckpt_") as tmp:
        bench_listing(Path(tmp))
    with tempfile.TemporaryDirectory(prefix="bench_ckpt_") as tmp:
        bench_save(Path(tmp))


if __name__ == "__main__":
    main()
