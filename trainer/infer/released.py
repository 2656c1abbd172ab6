"""Released model files: which format a file is, and which model its tensors are.

A model file is one of
  - a checkpoint of this project: `model_name`, `model_kwargs`, `model_state_dict`;
  - a BasicSR file: `{'params': ...}`, `{'params_ema': ...}` or both (then `params_ema`, the
    averaged weights BasicSR's own test scripts prefer);
  - an mmagic / mmediting file: `{'meta': ..., 'state_dict': {'generator.…': ...}}` with the key
    renames of `trainer.models.convert`;
  - a bare state dict (`{'feat_extract.main.0.weight': ..., ...}`, maybe `module.`-prefixed).
For the last three the architecture comes from the tensors themselves (`infer_basicvsrpp`): BasicSR's
`BasicVSRPlusPlus` at any width and depth (the paper's c64n7, the small ones, NTIRE's c128n25). Files
are read with the project's safe loader (`ckpt.load_checkpoint`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from trainer.infer.model import UpscaleError
from trainer.models.convert import rename_mmagic_keys, strip_wrappers

__all__ = ["ModelFile", "ModelSource", "infer_basicvsrpp", "read_model_file"]

FORMAT_NAMES = {"checkpoint": "a checkpoint of this project", "basicsr": "a BasicSR file",
                "mmagic": "an mmagic/mmediting file", "state_dict": "a bare state dict"}
_BLOCK = re.compile(r"^backbone\.backward_1\.main\.2\.(\d+)\.conv1\.weight$")
# Layers of other released video SR models, to say what a refused file is instead of listing keys.
_OTHER_MODELS = {"forward_trunk.": "a BasicVSR/IconVSR model (forward_trunk), not BasicVSR++",
                 "pcd_align.": "an EDVR model (pcd_align), not BasicVSR++",
                 "conv_first.": "a single-image or EDVR-style model (conv_first), not BasicVSR++"}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights came from: the file, its format, and which tensor dict inside it."""

    path: str
    format: str  # a key of FORMAT_NAMES
    params_key: str | None = None  # BasicSR: params or params_ema; mmagic: state_dict
    also_present: tuple[str, ...] = ()  # other weight dicts in the file that were not used

    @property
    def name(self) -> str:
        return Path(self.path).name

    def describe(self) -> str:
        """One line: the file, its format and which weights were used."""
        used = f", weights from '{self.params_key}'" if self.params_key else ""
        other = f" ('{', '.join(self.also_present)}' also in the file, not used)" if self.also_present else ""
        return f"{self.name}: {FORMAT_NAMES[self.format]}{used}{other}"

    def to_dict(self) -> dict[str, str | None]:
        return {"path": self.path, "name": self.name, "format": self.format, "params_key": self.params_key}


@dataclass
class ModelFile:
    """A model file read and understood: which model (name, kwargs) its weights are."""

    source: ModelSource
    name: str
    kwargs: dict
    weights: dict[str, Tensor]


def read_model_file(path: str | Path, *, allow_unsafe: bool = False) -> ModelFile:
    """Read `path` with the safe loader and work out its format and model; UpscaleError (one line,
    naming the file and what was found) when it holds no model this project has."""
    from ckpt import CheckpointError, load_checkpoint

    try:
        obj = load_checkpoint(path, allow_unsafe=allow_unsafe)
    except CheckpointError as exc:
        raise UpscaleError(" ".join(str(exc).split())) from None
    if "model_state_dict" in obj or "model_name" in obj:
        return _project_checkpoint(str(path), obj)
    source, weights = _unwrap(str(path), obj)
    return ModelFile(source, "basicvsrpp", infer_basicvsrpp(weights, source), weights)


def _project_checkpoint(path: str, obj: dict) -> ModelFile:
    name, kwargs, weights = obj.get("model_name"), obj.get("model_kwargs"), obj.get("model_state_dict")
    if not isinstance(name, str) or not isinstance(kwargs, dict) or not isinstance(weights, Mapping):
        raise UpscaleError(f"{path} holds no model_name/model_kwargs/model_state_dict, so the model "
                           "cannot be rebuilt (is it a training checkpoint of this project?)")
    weights = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in weights.items()}
    return ModelFile(ModelSource(path, "checkpoint"), name, dict(kwargs), weights)


def _unwrap(path: str, obj: dict) -> tuple[ModelSource, dict[str, Tensor]]:
    """The format of a released file and its tensors under BasicSR's names."""
    if "params" in obj or "params_ema" in obj:
        key = "params_ema" if "params_ema" in obj else "params"
        also = ("params",) if key == "params_ema" and "params" in obj else ()
        source, inner = ModelSource(path, "basicsr", key, also), obj[key]
    elif "state_dict" in obj:
        source, inner = ModelSource(path, "mmagic", "state_dict"), obj["state_dict"]
    else:
        source, inner = ModelSource(path, "state_dict"), obj
    if not isinstance(inner, Mapping):
        raise UpscaleError(f"{path}: '{source.params_key}' holds a {type(inner).__name__}, not a dict of weights")
    tensors = {str(k): v for k, v in inner.items() if isinstance(v, Tensor)}
    if not tensors:
        keys = ", ".join(sorted(map(str, obj))[:6])
        raise UpscaleError(f"{path} holds no model weights (top-level keys: {keys or 'none'}; expected a "
                           "checkpoint of this project, BasicSR's 'params', mmagic's 'state_dict' or a state dict)")
    return source, rename_mmagic_keys(strip_wrappers(tensors))


def infer_basicvsrpp(weights: Mapping[str, Tensor], source: ModelSource) -> dict:
    """BasicVSRPlusPlus arguments (mid_channels, num_blocks, hr_channels, scale) read off the tensor
    shapes; UpscaleError saying what was found when they fit no model of this project."""
    refuse = _refuser(source)
    for prefix, what in _OTHER_MODELS.items():
        if any(k.startswith(prefix) for k in weights):
            refuse(what)
    if "feat_extract.0.weight" in weights:  # strided convs before the residual blocks
        refuse("an is_low_res_input=False BasicVSR++ (a deblur/denoise/decompression model, output = input size)")
    for key in ("feat_extract.main.0.weight", "conv_hr.weight", "upconv1.weight"):
        if key not in weights:
            refuse(f"no '{key}' (not a BasicVSR++ model; first keys: {', '.join(list(weights)[:3])})")
    if not any(k.startswith("spynet.") for k in weights):
        refuse("no SPyNet ('spynet.*' layers): a BasicVSR++ without its flow network")
    mid = int(weights["feat_extract.main.0.weight"].shape[0])
    hr = int(weights["conv_hr.weight"].shape[0])
    blocks = [int(m.group(1)) for k in weights if (m := _BLOCK.match(k))]
    if not blocks:
        refuse("no residual blocks in backbone.backward_1")
    offset = weights.get("deform_align.backward_1.conv_offset.6.weight")
    if offset is not None and offset.shape[0] != 27 * 16:
        refuse(f"deformable alignment with {offset.shape[0] // 27} groups (this project's has 16)")
    up1 = int(weights["upconv1.weight"].shape[0])
    if "upconv2.weight" in weights:
        scale = 4
    else:
        scale = next((s for s in (2, 3) if up1 == hr * s * s), 0)
        if not scale:
            refuse(f"an upsampler of {up1} channels, which fits no x2/x3/x4 model")
    kwargs = {"mid_channels": mid, "num_blocks": max(blocks) + 1, "scale": scale}
    if hr != 64:  # BasicSR's is always 64
        kwargs["hr_channels"] = hr
    return kwargs


def _refuser(source: ModelSource):
    def refuse(what: str):
        raise UpscaleError(f"{source.path} ({FORMAT_NAMES[source.format]}) fits no model of this project: {what}")
    return refuse
