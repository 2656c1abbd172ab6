"""How a model file becomes a function: a checkpoint of this project or a released file (BasicSR,
mmagic, a bare state dict: trainer/infer/released.py says which model it is) is rebuilt and its
weights loaded; a `.onnx` file from `trainer.export` runs through onnxruntime (trainer/infer/onnx_model.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from trainer.infer.model import LoadedModel, UpscaleError, check_expected
from trainer.infer.released import FORMAT_NAMES, ModelFile, read_model_file

_CONSTANTS = ("spynet.mean", "spynet.std")


def load_model(path: str | Path, device: torch.device, *, expect_model: str | None = None,
               expect_scale: int | None = None, allow_unsafe: bool = False) -> LoadedModel:
    """Rebuild the file's model and load its weights (`LoadedModel.source` says which format and
    which weights); a released file's format goes to stderr in one line. `allow_unsafe` is
    ckpt.load_checkpoint's opt-in for trusted files that pickle other objects."""
    from trainer import models

    if Path(path).suffix.lower() == ".onnx":
        from trainer.infer.onnx_model import load_onnx

        loaded = load_onnx(path, device)
        check_expected(path, loaded.name, loaded.scale, expect_model, expect_scale)
        return loaded
    found = read_model_file(path, allow_unsafe=allow_unsafe)
    model = instantiate(found).to(device).eval()
    # the built model's own scale and window: kwargs may leave them to the model's defaults
    scale, num_frames = int(model.scale), int(getattr(model, "num_frames", found.kwargs.get("num_frames", 5)))
    check_expected(path, found.name, scale, expect_model, expect_scale)
    if found.source.format != "checkpoint":
        print(f"{found.source.describe()}; {describe_model(found)}", file=sys.stderr)
    return LoadedModel(model, found.name, scale, num_frames,
                       bool(models.MODEL_INFO[found.name]["many_to_many"]), kwargs=found.kwargs,
                       source=found.source)


def instantiate(found: ModelFile) -> nn.Module:
    """The model `found` names, with its weights loaded strictly; UpscaleError (one line) when they do not fit."""
    from trainer import models

    path = found.source.path
    if found.name not in models.MODEL_INFO:
        raise UpscaleError(f"{path} holds an unknown model {found.name!r}; known: {', '.join(models.known_models())}")
    # the file holds every weight: do not reread a SPyNet file that may not exist here
    try:
        model = models.build(found.name, **{k: v for k, v in found.kwargs.items() if k != "spynet_pretrained"})
    except ValueError as exc:
        raise UpscaleError(f"{path}: {exc}") from None
    weights = found.weights
    if found.source.format != "checkpoint":  # SPyNet's ImageNet mean/std are constants some files leave out
        weights = {**{k: v for k, v in model.state_dict().items() if k in _CONSTANTS}, **weights}
    problems = _mismatch(model.state_dict(), weights)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UpscaleError(f"{path} ({FORMAT_NAMES[found.source.format]}) fits no model of this project: "
                           f"{problems[0]}{more}, for {describe_model(found)}")
    model.load_state_dict(weights, strict=True)
    return model


def describe_model(found: ModelFile) -> str:
    args = " ".join(f"{k}={v}" for k, v in found.kwargs.items() if k != "spynet_pretrained")
    return f"{found.name} {args}"


def _mismatch(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> list[str]:
    """What keeps `got` from loading into a model whose state dict is `want`, in words."""
    return ([f"unknown layer '{k}'" for k in got if k not in want]
            + [f"missing layer '{k}'" for k in want if k not in got]
            + [f"layer '{k}' has shape {list(got[k].shape)}, expected {list(want[k].shape)}"
               for k in want if k in got and got[k].shape != want[k].shape])
