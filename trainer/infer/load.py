"""How a model file becomes a function: rebuild the model a checkpoint names and load its weights,
or run a `.onnx` file from `trainer.export` through onnxruntime (trainer/infer/onnx_model.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.infer.model import LoadedModel, UpscaleError, check_expected


def load_model(path: str | Path, device: torch.device, *, expect_model: str | None = None,
               expect_scale: int | None = None) -> LoadedModel:
    """Rebuild the checkpoint's model (model_name/model_kwargs) and load its weights; a `.onnx`
    file from `trainer.export` runs through onnxruntime instead."""
    from ckpt import CheckpointError, load_checkpoint
    from trainer import models

    if Path(path).suffix.lower() == ".onnx":
        from trainer.infer.onnx_model import load_onnx

        loaded = load_onnx(path, device)
        check_expected(path, loaded.name, loaded.scale, expect_model, expect_scale)
        return loaded
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise UpscaleError(str(exc)) from None
    name, kwargs = state.get("model_name"), state.get("model_kwargs")
    if not isinstance(name, str) or not isinstance(kwargs, dict) or "model_state_dict" not in state:
        raise UpscaleError(f"{path} holds no model_name/model_kwargs/model_state_dict, so the model "
                           "cannot be rebuilt (is it a training checkpoint of this project?)")
    scale = int(kwargs.get("scale", 0))
    check_expected(path, name, scale, expect_model, expect_scale)
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
                       bool(models.MODEL_INFO[name]["many_to_many"]), kwargs=kwargs)
