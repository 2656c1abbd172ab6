"""Upscale frame folders (or videos, with PyAV) with a trained checkpoint of either architecture.

    python -m trainer.upscale --checkpoint runs/default/checkpoint_step_0001000.pth \\
        --input frames/ --output out/ [--tile 128] [--device cuda]

Memory stays bounded on long sequences and large frames: the one-output-per-window model
(vsrpp) slides a window of num_frames over the sequence (edges padded by repeating the first /
last frame); many-to-many models (basicvsrpp) run on overlapping chunks of --window frames and
keep each chunk's centre part; --tile N splits frames into N x N LR tiles with --tile-overlap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from trainer.device import pick_device
from trainer.inference import (
    UpscaleError,
    UpscaleOptions,
    chunk_spans,
    load_model,
    run_tiled,
    upscale_frames,
)

IMAGE_EXT = (".png", ".jpg", ".jpeg")
VIDEO_EXT = (".mp4", ".mkv", ".mov", ".avi", ".webm")
__all__ = ["FrameSink", "UpscaleError", "UpscaleOptions", "chunk_spans", "load_model", "main", "read_frames",
           "run_tiled", "upscale_frames"]


# ---- frames in and out ---------------------------------------------------------------------------


def _import_av():
    try:
        import av
    except ImportError:
        raise UpscaleError("video files need PyAV: pip install -e '.[video]' (or give a folder of frames)") from None
    return av


def _to_tensor(arrays: list) -> Tensor:
    """HxWx3 uint8 arrays of one size -> [T, 3, h, w] float in [0, 1]."""
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise UpscaleError(f"frames differ in size: {sorted(sizes)}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)


def read_frames(path: str | Path) -> tuple[list[str], Tensor, float | None]:
    """(output names, frames [T, 3, h, w], fps or None) from a frame folder or a video file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXT)
        if not files:
            raise UpscaleError(f"no PNG/JPG frames in {path}")
        arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        return [f.stem + ".png" for f in files], _to_tensor(arrays), None
    if not path.is_file():
        raise UpscaleError(f"input not found: {path}")
    av = _import_av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        arrays = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        fps = float(stream.average_rate) if stream.average_rate else None
    if not arrays:
        raise UpscaleError(f"no video frames in {path}")
    return [f"{i:08d}.png" for i in range(len(arrays))], _to_tensor(arrays), fps


class FrameSink:
    """Writes HR frames [3, H, W] as PNGs into a folder, or into a video file (by extension)."""

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path, self.fps = Path(path), fps
        self._container = self._stream = None

    def __enter__(self) -> FrameSink:
        if self.path.suffix.lower() in VIDEO_EXT:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = _import_av().open(str(self.path), mode="w")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, name: str, frame: Tensor) -> None:
        array = frame.mul(255).round().byte().permute(1, 2, 0).numpy()
        if self._container is None:
            Image.fromarray(array).save(self.path / name)
            return
        if self._stream is None:
            from fractions import Fraction

            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.height, self._stream.width = array.shape[:2]
            self._stream.pix_fmt = "yuv420p"
        av = _import_av()
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
            self._container.mux(packet)

    def __exit__(self, *exc: object) -> None:
        if self._container is not None:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            self._container.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.upscale", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pth) holding model_name/kwargs")
    p.add_argument("--input", required=True, help="folder of PNG/JPG frames (sorted by name) or a video file")
    p.add_argument("--output", required=True, help="folder for PNG frames (same names) or a video file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--tile", type=int, default=0, help="LR tile side for large frames (0 = whole frames)")
    p.add_argument("--tile-overlap", type=int, default=16, help="LR context pixels around each tile")
    p.add_argument("--window", type=int, default=15, help="frames per chunk (many-to-many models)")
    p.add_argument("--window-overlap", type=int, default=3, help="context frames each side of a chunk")
    p.add_argument("--no-amp", action="store_true", help="full float32 on CUDA")
    p.add_argument("--fps", type=float, default=None, help="output video frame rate (default: the input's or 25)")
    p.add_argument("--expect-model", default=None, help="refuse a checkpoint of another architecture")
    p.add_argument("--expect-scale", type=int, default=None, help="refuse a checkpoint of another scale")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        opts = UpscaleOptions(args.tile, args.tile_overlap, args.window, args.window_overlap, not args.no_amp)
        try:
            device = pick_device(args.device)
        except ValueError as exc:
            raise UpscaleError(str(exc)) from None
        loaded = load_model(args.checkpoint, device, expect_model=args.expect_model, expect_scale=args.expect_scale)
        if Path(args.output).resolve() == Path(args.input).resolve():
            raise UpscaleError("--output must differ from --input (the input frames would be overwritten)")
        names, frames, fps = read_frames(args.input)
        with FrameSink(args.output, fps=args.fps or fps or 25.0) as sink:
            hr = upscale_frames(loaded, frames, opts, device)
            for name, frame in tqdm(zip(names, hr, strict=True), total=len(names), unit="frame",
                                    desc=f"{loaded.name} x{loaded.scale}"):
                sink.write(name, frame)
    except (UpscaleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(names)} frames x{loaded.scale} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
