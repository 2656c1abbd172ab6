"""An exported `.onnx` model (trainer.export) run by onnxruntime, in place of the PyTorch model.

The file carries what upscaling needs in its metadata_props (`METADATA`): the model's name,
scale, num_frames, many_to_many and `frames`, the fixed T of its input [B, T, 3, h, w] (the
export unrolls the recurrence over T frames; batch, height and width stay dynamic). A
many-to-many model given fewer frames gets the last one repeated up to T (outputs cut back).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from trainer.infer.model import LoadedModel, UpscaleError

INPUT, OUTPUT = "lr", "hr"
METADATA = ("model_name", "scale", "num_frames", "many_to_many", "frames", "model_kwargs", "fp16")


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise UpscaleError("running a .onnx model needs onnxruntime: pip install -e '.[onnx]'") from None
    return onnxruntime


class OnnxModel(nn.Module):
    """[B, t, 3, h, w] float32 in [0, 1] -> the exported model's output, through onnxruntime."""

    def __init__(self, session, frames: int, many_to_many: bool) -> None:
        super().__init__()
        self.session, self.frames, self.many_to_many = session, frames, many_to_many

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        if t > self.frames or (t < self.frames and not self.many_to_many):
            raise ValueError(f"this exported model takes {self.frames} frames at a time, got {t}")
        if t < self.frames:
            x = torch.cat([x, x[:, -1:].expand(-1, self.frames - t, -1, -1, -1)], dim=1)
        out = self.session.run([OUTPUT], {INPUT: x.detach().float().cpu().contiguous().numpy()})[0]
        out = torch.from_numpy(out)
        return out[:, :t] if self.many_to_many else out


def load_onnx(path: str | Path, device: torch.device) -> LoadedModel:
    ort = _import_ort()
    if not Path(path).is_file():
        raise UpscaleError(f"no model file at {path}")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same CPU budget as the PyTorch path
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise UpscaleError(f"onnxruntime cannot load {path}: {exc}") from None
    meta = session.get_modelmeta().custom_metadata_map
    missing = [k for k in METADATA if k not in meta]
    if missing:
        raise UpscaleError(f"{path} lacks the metadata {', '.join(missing)} (export it with python -m trainer.export)")
    frames, many = int(meta["frames"]), meta["many_to_many"] == "true"
    return LoadedModel(OnnxModel(session, frames, many), meta["model_name"], int(meta["scale"]),
                       int(meta["num_frames"]), many, max_frames=frames)
