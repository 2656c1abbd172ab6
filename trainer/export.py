"""Export a training checkpoint to ONNX, to run without this project (onnxruntime, TensorRT, ...).

    python -m trainer.export --checkpoint runs/default/checkpoint_step_0001000.pth --out model.onnx \\
        [--fp16] [--frames T]

The graph takes `lr` [B, T, 3, h, w] in [0, 1] and gives `hr` ([B, 3, sH, sW] for vsrpp, the
centre frame; [B, T, 3, sH, sW] for basicvsrpp); batch, height and width are dynamic, T is fixed
(the recurrence is unrolled over it: vsrpp's num_frames, basicvsrpp's --frames, default 15).
BasicVSR++'s deformable alignment exports through its pure-PyTorch path (GridSample + MatMul,
opset 17), so any ONNX runtime runs it; its mirrored-sequence shortcut is traced as off (both flow
directions are always computed, which gives the same numbers). The model's name, scale, num_frames, many_to_many and T
travel in the file's metadata_props, so `python -m trainer.upscale --checkpoint model.onnx` needs
nothing else. --fp16 stores float16 weights and computes in float16 (input and output stay float32).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor, nn

from trainer.infer.load import load_model
from trainer.infer.model import LoadedModel, UpscaleError, UpscaleOptions
from trainer.infer.onnx_model import INPUT, OUTPUT
from trainer.models import deform

OPSET = 17  # GridSample (16+) for flow warping and the pure-PyTorch deformable convolution
EXAMPLE_HW = (36, 44)  # tracing size: not a multiple of 32, so SpyNet's resizing is traced too


class ExportError(UpscaleError):
    """Why this checkpoint cannot become an ONNX model, in words."""


class _Graph(nn.Module):
    """What the .onnx computes: float32 in, float32 out, optionally float16 inside."""

    def __init__(self, model: nn.Module, fp16: bool) -> None:
        super().__init__()
        self.model, self.fp16 = (model.half() if fp16 else model), fp16

    def forward(self, lr: Tensor) -> Tensor:
        return self.model(lr.half() if self.fp16 else lr).float()


_arange = torch.arange


def _half_safe_arange(*args, dtype: torch.dtype | None = None, **kwargs) -> Tensor:
    """torch.arange, float16 ranges made as float32 and cast: the exporter fails on a float16 Range."""
    if dtype is torch.float16:
        return _arange(*args, dtype=torch.float32, **kwargs).half()
    return _arange(*args, dtype=dtype, **kwargs)


@contextlib.contextmanager
def exportable() -> Iterator[None]:
    """The model's export-friendly paths while inside: pure-PyTorch deformable convolution and
    float16 coordinate grids the exporter can write."""
    with mock.patch.object(deform, "_tv_deform_conv2d", None), \
            mock.patch.object(torch, "arange", _half_safe_arange):
        yield


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The exporter dumps its whole graph to file descriptor 2 when it fails; our one line says what matters."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _frames(loaded: LoadedModel, frames: int | None) -> int:
    if not loaded.many_to_many:
        if frames not in (None, loaded.num_frames):
            raise ExportError(f"{loaded.name} takes exactly num_frames={loaded.num_frames} frames, "
                              f"not --frames {frames}")
        return loaded.num_frames
    frames = UpscaleOptions().window if frames is None else frames
    if frames < 1:
        raise ExportError(f"--frames must be >= 1, got {frames}")
    return frames


def _unsupported(exc: Exception) -> str:
    """The exporter's first line (it names the operator: "Exporting the operator 'aten::x' ...")."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def export(checkpoint: str | Path, out: str | Path, *, fp16: bool = False, frames: int | None = None) -> LoadedModel:
    """Write `out` (.onnx) from a training checkpoint; ExportError when an operator has no ONNX form."""
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise ExportError(f"{checkpoint} is already an ONNX model")
    loaded = load_model(checkpoint, torch.device("cpu"))
    t = _frames(loaded, frames)
    graph = _Graph(loaded.model, fp16).eval()
    example = torch.rand(1, t, 3, *EXAMPLE_HW, generator=torch.Generator().manual_seed(0))
    hr_axes = {0: "batch", 2: "out_height", 3: "out_width"} if not loaded.many_to_many else \
        {0: "batch", 3: "out_height", 4: "out_width"}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    try:
        with exportable(), warnings.catch_warnings(), torch.no_grad(), _quiet_stderr():
            warnings.simplefilter("ignore")  # tracer and deprecation notes, expected here
            torch.onnx.export(graph, (example,), str(out), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch", 3: "height", 4: "width"}, OUTPUT: hr_axes})
    except (torch.onnx.errors.OnnxExporterError, RuntimeError) as exc:
        Path(out).unlink(missing_ok=True)
        raise ExportError(f"{loaded.name} cannot be exported to ONNX (opset {OPSET}): {_unsupported(exc)}") from None
    _write_metadata(out, loaded, t, fp16)
    return loaded


def _write_metadata(out: str | Path, loaded: LoadedModel, frames: int, fp16: bool) -> None:
    import onnx

    meta = {"model_name": loaded.name, "scale": str(loaded.scale), "num_frames": str(loaded.num_frames),
            "many_to_many": "true" if loaded.many_to_many else "false", "frames": str(frames),
            "model_kwargs": json.dumps(loaded.kwargs, sort_keys=True, default=str), "fp16": "true" if fp16 else "false"}
    model = onnx.load(str(out))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "vsrpp trainer.export"
    onnx.save(model, str(out))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pth) holding model_name/kwargs")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute (for GPU runtimes)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per call T (many-to-many models; default 15; vsrpp: its num_frames)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("error: export needs the onnx package: pip install -e '.[onnx]'", file=sys.stderr)
        return 2
    print(f"exporting {args.checkpoint} -> {args.out} (tracing unrolls the model over its T frames: "
          "large models take minutes)", flush=True)
    try:
        loaded = export(args.checkpoint, args.out, fp16=args.fp16, frames=args.frames)
    except (UpscaleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{loaded.name} x{loaded.scale} -> {args.out}: input [B, {_frames(loaded, args.frames)}, 3, h, w] in [0, 1]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
