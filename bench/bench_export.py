"""ONNX export: onnxruntime vs eager PyTorch on CPU for the trainer's default model.

`python -m bench export`. Exports a random-weight default checkpoint with `trainer.export`, then
times both on the same windows [1, num_frames, 3, h, w] (interleaved rounds, best of each,
same thread count) and prints the largest output difference.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from bench.bench_upscale import default_checkpoint
from trainer.export import export
from trainer.infer.load import load_model

SIZES = ((90, 212), (180, 320))  # LR (h, w): the clip, then 320x180
WINDOWS, ROUNDS = 6, 3


def _best_fps(model, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    for _ in range(WINDOWS):
        model(x)
    return WINDOWS / (time.perf_counter() - t0)


def compare(ckpt: Path, onnx_path: Path, sizes: tuple[tuple[int, int], ...]) -> None:
    cpu = torch.device("cpu")
    eager, runtime = load_model(ckpt, cpu), load_model(onnx_path, cpu)  # onnxruntime: torch's thread count
    for h, w in sizes:
        x = torch.rand(1, eager.num_frames, 3, h, w)
        with torch.inference_mode():
            diff = (eager.model(x) - runtime.model(x)).abs().max().item()
            fps = {"torch": 0.0, "onnxruntime": 0.0}
            for _ in range(ROUNDS):
                fps["torch"] = max(fps["torch"], _best_fps(eager.model, x))
                fps["onnxruntime"] = max(fps["onnxruntime"], _best_fps(runtime.model, x))
        print(f"  {w}x{h} -> x{eager.scale}, {torch.get_num_threads()} threads: eager PyTorch "
              f"{fps['torch']:.2f} frames/s, onnxruntime {fps['onnxruntime']:.2f} frames/s "
              f"(x{fps['onnxruntime'] / fps['torch']:.2f}); max |difference| {diff:.1e}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        ckpt, onnx_path = default_checkpoint(Path(tmp) / "default.pth"), Path(tmp) / "default.onnx"
        t0 = time.perf_counter()
        export(ckpt, onnx_path)
        print(f"export of the default model: {time.perf_counter() - t0:.1f} s")
        compare(ckpt, onnx_path, SIZES)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a busy machine's OpenMP spin-waits hurt PyTorch more at 2 threads
        compare(ckpt, onnx_path, SIZES[:1])
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
