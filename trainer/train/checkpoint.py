"""What a training checkpoint holds, in one place: `to_checkpoint` and its mirror `from_checkpoint`.

The dict is flat, one named part per key (docs/checkpoints.md lists them; a test keeps that
list equal to `CHECKPOINT_KEYS`). `to_checkpoint` is cheap enough for the loop: small parts are
copied at once, while weights and optimizer state still reference the live tensors until
`snapshot.freeze` copies them. Everything loads with `torch.load(weights_only=True)`.

A divergence rollback restores a subset of the same parts (`training_parts`, in the same layout,
by the same `restore_training_parts`), and `state_tensors` walks the tensors of either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainer.train.snapshot import capture_rng, live_weights, restore_rng, to_cpu, unwrap

if TYPE_CHECKING:  # config and state import the divergence guard, which restores through this module
    from trainer.config import Config
    from trainer.train.state import TrainingState

# Every top-level key of a training checkpoint (format_version is added by ckpt.save_checkpoint).
CHECKPOINT_KEYS = ("format_version", "step", "epoch", "timestamp", "type", "model_name", "model_kwargs",
                   "config", "metrics", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict",
                   "scaler_state_dict", "train_state", "rng_state", "data_state", "init_from")
TRAIN_STATE_KEYS = ("best_score", "clipper", "adaptive_loss", "divergence")


class ResumeError(ValueError):
    """The requested checkpoint does not exist or cannot be used."""


def to_checkpoint(state: TrainingState, *, step: int, kind: str, config: Config,
                  train_loss: float | None) -> dict[str, Any]:
    """The checkpoint of `state` after `step` optimizer steps; `kind`: regular, best, emergency."""
    val = state.last_validation
    quality, loss = val.get("quality"), val.get("loss", train_loss)
    small = {
        "model_name": state.model_name,
        "model_kwargs": state.model_kwargs,
        "config": config.to_dict(),
        "metrics": {"quality": quality, "loss": loss, "psnr": val.get("psnr"), "ssim": val.get("ssim"),
                    "ki_quality": quality, "val_loss": loss},  # the original system's names too
        "scheduler_state_dict": {"kind": "lr_at", "plateau_boost": state.boost.state_dict()},
        "scaler_state_dict": state.scaler.state_dict() if state.scaler.is_enabled() else None,
        "train_state": {"best_score": state.best_score, "clipper": state.clipper.state_dict(),
                        "adaptive_loss": state.adaptive.state_dict() if state.adaptive else None,
                        "divergence": state.divergence.state_dict()},
        "rng_state": capture_rng(),
        "data_state": state.batches.state_dict(),
        "init_from": state.init_source,  # the file a fine-tune started from (None: from scratch)
    }
    return {
        "step": step,
        "epoch": state.batches.epoch,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "type": kind,
        "model_state_dict": live_weights(state.model),
        "optimizer_state_dict": state.optimizer.state_dict(),
        **to_cpu(small),
    }


def from_checkpoint(ckpt: dict[str, Any], state: TrainingState, path: Path) -> int:
    """Restore `state` (and the random streams) from a checkpoint read from `path`; the step it holds.

    Older checkpoints may lack the scaler, train, scheduler, data and RNG parts: those keep
    their fresh values. `metrics` gives back the latest validation when there was one, so the next
    checkpoints carry its quality before the run validates again. `config`, `epoch`, `timestamp` and
    `type` describe the file and are not restored (the run's config comes from its command line).
    """
    check_model(ckpt, state, path)
    try:
        restore_training_parts(state, ckpt)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ResumeError(f"cannot resume from {path}: {exc}") from None
    train = ckpt.get("train_state") or {}
    state.best_score = train.get("best_score")
    if train.get("divergence"):
        state.divergence.load_state_dict(train["divergence"])
    boost = (ckpt.get("scheduler_state_dict") or {}).get("plateau_boost")
    if boost:
        state.boost.load_state_dict(boost)
    if ckpt.get("data_state"):
        state.batches.load_state_dict(ckpt["data_state"])
    if ckpt.get("rng_state"):
        restore_rng(ckpt["rng_state"])
    state.last_validation = last_validation(ckpt.get("metrics") or {})
    state.init_source = ckpt.get("init_from")  # a fine-tune stays one across resumes
    return int(ckpt["step"])


def last_validation(metrics: dict[str, Any]) -> dict[str, Any]:
    """The latest validation `to_checkpoint` wrote into `metrics`; {} when there was none yet (its
    `loss` is then the training loss, which the next checkpoints take fresh)."""
    if metrics.get("quality") is None:
        return {}
    return {k: metrics.get(k) for k in ("quality", "loss", "psnr", "ssim")}


def training_parts(state: TrainingState) -> dict[str, Any]:
    """What one optimizer step changes, in the checkpoint's layout, referencing the live state: weights,
    optimizer, grad scaler, clipper, adaptive loss weights (what a rollback copies and restores)."""
    return {"model_state_dict": unwrap(state.model).state_dict(),
            "optimizer_state_dict": state.optimizer.state_dict(),
            "scaler_state_dict": state.scaler.state_dict() if state.scaler.is_enabled() else None,
            "train_state": {"clipper": state.clipper.state_dict(),
                            "adaptive_loss": state.adaptive.state_dict() if state.adaptive else None}}


def restore_training_parts(state: TrainingState, saved: dict[str, Any], *, keep_saved: bool = False) -> None:
    """Load `training_parts` from a checkpoint or a rollback's copy of them; parts it lacks (older
    files) keep their values. `keep_saved`: copy the optimizer state first, so that `saved`, kept
    for another rollback, never shares tensors with the live state."""
    unwrap(state.model).load_state_dict(saved["model_state_dict"])
    if saved.get("optimizer_state_dict"):
        optimizer = saved["optimizer_state_dict"]
        state.optimizer.load_state_dict(to_cpu(optimizer) if keep_saved else optimizer)
        state.optimizer.zero_grad(set_to_none=True)
    if saved.get("scaler_state_dict"):
        state.scaler.load_state_dict(saved["scaler_state_dict"])
    train = saved.get("train_state") or {}
    if train.get("clipper"):
        state.clipper.load_state_dict(train["clipper"])
    if state.adaptive is not None and train.get("adaptive_loss"):
        state.adaptive.load_state_dict(train["adaptive_loss"])


def state_tensors(saved: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """Every tensor of a checkpoint's weights and optimizer state (or of `training_parts`), named, in a
    fixed order: weights and buffers by name, then each parameter's optimizer state by index and key."""
    tensors = [(name, t) for name, t in saved["model_state_dict"].items() if isinstance(t, torch.Tensor)]
    for index, per_param in sorted((saved.get("optimizer_state_dict") or {}).get("state", {}).items()):
        tensors += [(f"optimizer state of parameter {index} ({key})", value)
                    for key, value in sorted(per_param.items()) if isinstance(value, torch.Tensor)]
    return tensors


def check_model(ckpt: dict[str, Any], state: TrainingState, path: Path) -> None:
    """ResumeError, with the settings that would fit, when the file holds another model."""
    from trainer.config import model_key  # here: trainer.config imports this module (via divergence)

    name, kwargs = ckpt.get("model_name"), ckpt.get("model_kwargs")
    if name is None or (name, kwargs) == (state.model_name, state.model_kwargs):
        return
    settings = " ".join(f"--set {model_key(k)}={v!r}" for k, v in (kwargs or {}).items())
    raise ResumeError(f"{path.name} holds a {name!r} model with {kwargs}, but this run is configured "
                      f"for {state.model_name!r} with {state.model_kwargs}. Resume with the same "
                      f"settings (--set model.name={name} {settings}) or start a new run "
                      f"(--resume never).")

