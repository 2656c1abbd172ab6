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
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

IMAGE_EXT = (".png", ".jpg", ".jpeg")
VIDEO_EXT = (".mp4", ".mkv", ".mov", ".avi", ".webm")
__all__ = ["FrameSink", "UpscaleError", "UpscaleOptions", "chunk_spans", "load_model", "main", "read_frames",
           "run_tiled", "upscale_frames"]


class UpscaleError(ValueError):
    """What is wrong with the checkpoint, the input or the options, in words."""


@dataclass
class UpscaleOptions:
    tile: int = 0  # LR tile side; 0 = whole frames
    tile_overlap: int = 16  # LR pixels of context around each tile
    window: int = 15  # frames per chunk for many-to-many models
    window_overlap: int = 3  # frames of context on each side of a chunk
    amp: bool = True  # float16 autocast on CUDA

    def __post_init__(self) -> None:
        if self.tile < 0 or self.tile_overlap < 0 or self.window_overlap < 0:
            raise UpscaleError("--tile, --tile-overlap and --window-overlap must be >= 0")
        if self.window - 2 * self.window_overlap < 1:
            raise UpscaleError(f"--window ({self.window}) must exceed twice --window-overlap "
                               f"({self.window_overlap})")


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    scale: int
    num_frames: int
    many_to_many: bool


def load_model(path: str | Path, device: torch.device, *, expect_model: str | None = None,
               expect_scale: int | None = None) -> LoadedModel:
    """Rebuild the checkpoint's model (model_name/model_kwargs) and load its weights."""
    from ckpt import CheckpointError, load_checkpoint
    from trainer import models

    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise UpscaleError(str(exc)) from None
    name, kwargs = state.get("model_name"), state.get("model_kwargs")
    if not isinstance(name, str) or not isinstance(kwargs, dict) or "model_state_dict" not in state:
        raise UpscaleError(f"{path} holds no model_name/model_kwargs/model_state_dict, so the model "
                           "cannot be rebuilt (is it a training checkpoint of this project?)")
    if expect_model is not None and name != expect_model:
        raise UpscaleError(f"{path} holds a {name!r} model, not the expected {expect_model!r}")
    scale = int(kwargs.get("scale", 0))
    if expect_scale is not None and scale != expect_scale:
        raise UpscaleError(f"{path} holds a x{scale} model, not the expected x{expect_scale}")
    if name not in models.MODEL_INFO:
        raise UpscaleError(f"{path} holds an unknown model {name!r}; known: {', '.join(models.known_models())}")
    # the checkpoint holds every weight: do not reread a SPyNet file that may not exist here
    model = models.build(name, **{k: v for k, v in kwargs.items() if k != "spynet_pretrained"})
    weights = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state["model_state_dict"].items()}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise UpscaleError(f"{path}: weights do not fit {name} {kwargs}: {exc}") from None
    model.to(device).eval()
    return LoadedModel(model, name, scale, int(kwargs.get("num_frames", 5)),
                       bool(models.MODEL_INFO[name]["many_to_many"]))


def run_tiled(fn: Callable[[Tensor], Tensor], x: Tensor, scale: int, tile: int, overlap: int) -> Tensor:
    """fn on LR tiles of x [..., h, w] with `overlap` context; the centres are stitched together."""
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(x)
    out: Tensor | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            ys, xs = max(0, y0 - overlap), max(0, x0 - overlap)
            part = fn(x[..., ys:min(h, y1 + overlap), xs:min(w, x1 + overlap)])
            if out is None:
                out = part.new_zeros(*part.shape[:-2], h * scale, w * scale)
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                part[..., (y0 - ys) * scale:(y1 - ys) * scale, (x0 - xs) * scale:(x1 - xs) * scale]
    assert out is not None
    return out


def chunk_spans(t: int, window: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, end, keep_start, keep_end) chunks of <= window frames covering 0..t-1 once each."""
    step = max(1, window - 2 * overlap)
    keep = 0
    while keep < t:
        keep_end = t if window >= t else min(t, keep + step)
        yield max(0, keep - overlap), min(t, keep_end + overlap), keep, keep_end
        keep = keep_end


def _windows_many_to_one(frames: Tensor, num_frames: int) -> Iterator[Tensor]:
    """For each frame, the num_frames window centred on it, edges repeated: [1, T, 3, h, w]."""
    t, c = frames.shape[0], num_frames // 2
    for i in range(t):
        idx = torch.arange(i - c, i + c + 1).clamp(0, t - 1)
        yield frames[idx].unsqueeze(0)


def upscale_frames(loaded: LoadedModel, frames: Tensor, opts: UpscaleOptions,
                   device: torch.device) -> Iterator[Tensor]:
    """frames [T, 3, h, w] in [0, 1] (CPU) -> each HR frame [3, sH, sW] in order (CPU, clamped)."""
    use_amp = opts.amp and device.type == "cuda"

    def fn(x: Tensor) -> Tensor:
        ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
        with ctx:
            return loaded.model(x.to(device)).float()

    with torch.inference_mode():
        if not loaded.many_to_many:
            for window in _windows_many_to_one(frames, loaded.num_frames):
                yield run_tiled(fn, window, loaded.scale, opts.tile, opts.tile_overlap)[0].clamp(0, 1).cpu()
            return
        for start, end, keep, keep_end in chunk_spans(frames.shape[0], opts.window, opts.window_overlap):
            out = run_tiled(fn, frames[start:end].unsqueeze(0), loaded.scale, opts.tile, opts.tile_overlap)
            yield from out[0, keep - start:keep_end - start].clamp(0, 1).cpu()


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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UpscaleError("--device cuda asked but CUDA is not available")
    return torch.device(name)


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
        device = pick_device(args.device)
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
