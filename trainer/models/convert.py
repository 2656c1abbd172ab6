"""Released BasicVSR++ / SPyNet weights -> our (= BasicSR's) parameter names.

BasicSR files: `{'params': {...}}` (sometimes `params_ema`), names already ours.
mmagic / mmedit files: `{'meta': ..., 'state_dict': {'generator.spynet...', 'step_counter', ...}}`
with these differences:
  spynet.basic_module.N.basic_module.M.conv.*   -> spynet.basic_module.N.basic_module.{2M}.*
  upsample1.upsample_conv.* / upsample2...      -> upconv1.* / upconv2.*
  everything else (feat_extract.main..., deform_align.<branch>.conv_offset..., backbone...,
  reconstruction..., conv_hr, conv_last) is the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

__all__ = ["convert_state_dict", "load_weights_file", "rename_mmagic_keys", "strip_wrappers", "to_basicsr_spynet",
           "unwrap_state_dict"]

_MM_SPYNET = re.compile(r"^(.*basic_module\.\d+\.basic_module\.)(\d+)\.conv\.(weight|bias)$")
_MM_UPSAMPLE = re.compile(r"^upsample([12])\.upsample_conv\.(weight|bias)$")


def unwrap_state_dict(obj: Mapping) -> dict[str, Tensor]:
    """Find the tensor dict inside a released file; strip a 'generator.' (or 'module.') prefix."""
    for key in ("params", "params_ema", "state_dict", "model_state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError("no tensors found (expected {'params': ...} or {'state_dict': ...})")
    return strip_wrappers(state)


def strip_wrappers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The network's own names: mmagic's 'generator.' (the restorer's other parts dropped) and a
    DataParallel 'module.' prefix removed."""
    if any(k.startswith("generator.") for k in state):
        state = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def _rename(key: str) -> str:
    if m := _MM_SPYNET.match(key):
        return f"{m.group(1)}{2 * int(m.group(2))}.{m.group(3)}"
    if m := _MM_UPSAMPLE.match(key):
        return f"upconv{m.group(1)}.{m.group(2)}"
    return key


def rename_mmagic_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """mmagic's parameter names -> BasicSR's (= ours); BasicSR names pass unchanged."""
    return {_rename(k): v for k, v in state.items()}


def convert_state_dict(obj: Mapping) -> dict[str, Tensor]:
    """Any supported released BasicVSR++ file's content -> state dict with BasicSR's names."""
    return rename_mmagic_keys(unwrap_state_dict(obj))


def to_basicsr_spynet(obj: Mapping) -> dict[str, Tensor]:
    """A SPyNet file (standalone, or a whole BasicVSR++ file) -> SpyNet state dict."""
    state = convert_state_dict(obj)
    if any(k.startswith("spynet.") for k in state):
        state = {k[len("spynet."):]: v for k, v in state.items() if k.startswith("spynet.")}
    return state


def load_weights_file(path: str | Path) -> dict:
    """The project's safe loader (ckpt.load_checkpoint); a clear error for a missing or unreadable file."""
    from ckpt import CheckpointError, load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:  # corrupt, truncated, or pickled code objects
        raise ValueError(f"cannot read weights file {path}: {exc}") from exc
