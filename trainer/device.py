"""The one device choice and the one mixed-precision policy, for training and for inference."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when present), `cpu` or `cuda`; ValueError when CUDA is asked for but absent."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available on this machine")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def amp_dtype(mode: str | bool, device: torch.device) -> torch.dtype | None:
    """None (full precision), bf16 or fp16 (the latter wants a GradScaler when training).

    `mode`: "auto"/True (bf16 where supported, else fp16), "bf16", "fp16", "off"/False.
    Mixed precision is a CUDA matter: on CPU it is always None.
    """
    if device.type != "cuda" or mode in ("off", False, None):
        return None
    if mode in ("auto", True):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def autocast(device: torch.device, mode: str | bool) -> contextlib.AbstractContextManager:
    """The autocast context for `mode` on `device` (a no-op in full precision)."""
    return autocast_dtype(device, amp_dtype(mode, device))


def autocast_dtype(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device` (an `amp_dtype` answer); None is full precision, a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
