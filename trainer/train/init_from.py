"""`python -m trainer --init-from FILE`: a new run starts from a model file's weights.

FILE is a released file (BasicSR, mmagic, a bare state dict) or a checkpoint of this project
(trainer/infer/released.py reads both). It is read and checked completely before anything else
happens (no data read, no run folder touched, no socket bound), so a bad file costs one line.
The file decides the model and the scale (`model_settings`); optimizer, schedule, step, best score
and data position start fresh. Every checkpoint of the run records where it started
(`InitFrom.record`: path, name, sha256, format, params_key) under the key `init_from`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from trainer.config import Config, ConfigError, model_key
from trainer.infer.load import describe_model, instantiate
from trainer.infer.model import UpscaleError
from trainer.infer.released import ModelFile, read_model_file
from trainer.train.snapshot import unwrap

# Model arguments that are how a model trains, not what it is: the config keeps deciding these.
_TRAINING_ONLY = {"spynet_pretrained", "spynet_fix_iter", "spynet_lr_mul", "cpu_cache_length", "checkpointing"}
_NOT_ARCHITECTURE = {"basicvsrpp": _TRAINING_ONLY | {"num_frames"}}  # any clip length runs through it
_ALIASES = {"basicvsrpp": {"mid_channels": "n_feats", "num_blocks": "n_blocks"}}


@dataclass
class InitFrom:
    """A model file read, checked to fit its model, and fingerprinted."""

    found: ModelFile
    sha256: str
    weights: dict[str, Tensor]  # as the model's load_state_dict takes them (checked to fit)

    @property
    def name(self) -> str:
        return self.found.source.name

    def record(self) -> dict[str, str | None]:
        """What every checkpoint of the run keeps under `init_from`."""
        return {**self.found.source.to_dict(), "sha256": self.sha256}

    def describe(self) -> str:
        return f"Starting from {self.found.source.describe()}; {describe_model(self.found)}"

    def apply(self, model: nn.Module) -> None:
        """Load the file's weights into the run's freshly built model."""
        unwrap(model).load_state_dict(self.weights, strict=True)


def read_init_from(path: str | Path) -> InitFrom:
    """Read FILE and check its weights fit the model it names; ConfigError in one line otherwise."""
    try:
        found = read_model_file(path)
        weights = instantiate(found).state_dict()  # a model that does not fit fails here, before anything starts
    except UpscaleError as exc:
        raise ConfigError(f"--init-from: {exc}") from None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return InitFrom(found, digest.hexdigest(), weights)


def model_settings(init: InitFrom, cfg: Config) -> dict[str, Any]:
    """Dotted config settings (`model.name`, `model.n_feats`, `model.options.hr_channels`, ...) that
    build the file's model; an alias the config also sets (options.mid_channels) follows."""
    name, skip = init.found.name, _NOT_ARCHITECTURE.get(init.found.name, _TRAINING_ONLY)
    aliases = _ALIASES.get(name, {})
    settings: dict[str, Any] = {"model.name": name}
    for key, value in init.found.kwargs.items():
        if key in skip:
            continue
        key = aliases.get(key, key)
        settings[model_key(key)] = value
    for alias, generic in aliases.items():
        if alias in cfg.model.options and f"model.{generic}" in settings:
            settings[f"model.options.{alias}"] = settings[f"model.{generic}"]
    return settings


def taken_from_file(init: InitFrom, cfg: Config, settings: dict[str, Any]) -> str | None:
    """One line naming what the file decided against the config, or None when they agree."""
    differ = {key: value for key, value in settings.items() if _configured(cfg, key) not in (None, value)}
    if not differ:
        return None
    said = ", ".join(f"{key.removeprefix('model.')}={_configured(cfg, key)}" for key in differ)
    took = ", ".join(f"{key.removeprefix('model.')}={value}" for key, value in differ.items())
    return f"--init-from {init.name}: {took} taken from the file (the config said {said})"


def _configured(cfg: Config, key: str) -> Any:
    if key.startswith("model.options."):
        return cfg.model.options.get(key.removeprefix("model.options."))
    return getattr(cfg.model, key.removeprefix("model."))
