"""Trainer configuration: nested dataclasses, a TOML file, `--set` overrides.

Each section validates itself in `__post_init__`; `load_config` turns any
mistake into a `ConfigError` that names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.toml"


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says which and why."""


def _positive_int(section: str, name: str, value: int, *, zero_ok: bool = False) -> None:
    low = 0 if zero_ok else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a non-negative int" if zero_ok else "a positive int"
        raise ConfigError(f"{section}.{name} must be {kind}, got {value!r}")


def _positive_float(section: str, name: str, value: float, *, zero_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not zero_ok):
        kind = "a non-negative number" if zero_ok else "a positive number"
        raise ConfigError(f"{section}.{name} must be {kind}, got {value!r}")


def _choice(section: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{section}.{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass
class ModelConfig:
    name: str = "vsrpp"
    num_frames: int = 5
    n_feats: int = 32
    n_blocks: int = 4
    scale: int = 3

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"model.name must be a model name, got {self.name!r}")
        for key in ("num_frames", "n_feats", "n_blocks", "scale"):
            _positive_int("model", key, getattr(self, key))

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `trainer.models.build(name, **kwargs)`."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}


@dataclass
class DataConfig:
    root: str = ""  # "" = the embedded sample set
    patch_size: int = 32  # LR patch side for training crops
    num_workers: int = 0
    augment: bool = True
    val_max_images: int = 4

    def __post_init__(self) -> None:
        _positive_int("data", "patch_size", self.patch_size)
        _positive_int("data", "num_workers", self.num_workers, zero_ok=True)
        _positive_int("data", "val_max_images", self.val_max_images)


@dataclass
class OptimConfig:
    lr_max: float = 4e-4
    lr_min: float = 1e-6
    warmup_iters: int = 50
    weight_decay: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.99

    def __post_init__(self) -> None:
        _positive_float("optim", "lr_max", self.lr_max)
        _positive_float("optim", "lr_min", self.lr_min, zero_ok=True)
        if self.lr_min > self.lr_max:
            raise ConfigError(f"optim.lr_min ({self.lr_min}) must not exceed optim.lr_max ({self.lr_max})")
        _positive_int("optim", "warmup_iters", self.warmup_iters, zero_ok=True)
        _positive_float("optim", "weight_decay", self.weight_decay, zero_ok=True)
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"optim.{key} must be in [0, 1), got {getattr(self, key)!r}")


@dataclass
class LossConfig:
    w_l1: float = 0.6
    w_ms: float = 0.2
    w_grad: float = 0.2
    adaptive: bool = True

    def __post_init__(self) -> None:
        for key in ("w_l1", "w_ms", "w_grad"):
            _positive_float("loss", key, getattr(self, key), zero_ok=True)


@dataclass
class TrainConfig:
    max_iters: int = 300
    batch_size: int = 4
    accum_steps: int = 1
    val_every: int = 100
    save_every: int = 100
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto = bf16 on CUDA when supported, else fp16 + GradScaler; off on CPU
    clip_start: float = 1.5
    clip_adaptive: bool = True

    def __post_init__(self) -> None:
        for key in ("max_iters", "batch_size", "accum_steps", "val_every", "save_every"):
            _positive_int("train", key, getattr(self, key))
        _positive_int("train", "seed", self.seed, zero_ok=True)
        _choice("train", "device", self.device, ("auto", "cpu", "cuda"))
        _choice("train", "amp", self.amp, ("auto", "bf16", "fp16", "off"))
        _positive_float("train", "clip_start", self.clip_start)


@dataclass
class CheckpointConfig:
    keep_last: int = 3
    keep_best: int = 2

    def __post_init__(self) -> None:
        _positive_int("checkpoint", "keep_last", self.keep_last)
        _positive_int("checkpoint", "keep_best", self.keep_best, zero_ok=True)


@dataclass
class TelemetryConfig:
    status_hz: float = 10.0
    heartbeat_s: float = 0.5
    history: int = 2000
    log_every_s: float = 10.0  # plain progress lines without a TTY
    tensorboard: bool = True

    def __post_init__(self) -> None:
        _positive_float("telemetry", "status_hz", self.status_hz)
        _positive_float("telemetry", "heartbeat_s", self.heartbeat_s)
        if self.heartbeat_s > 1.0:
            raise ConfigError(f"telemetry.heartbeat_s must be <= 1.0 s, got {self.heartbeat_s!r}")
        _positive_int("telemetry", "history", self.history)
        _positive_float("telemetry", "log_every_s", self.log_every_s)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against a field's type; ints are accepted where floats are."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            continue
        if isinstance(kind, type) and isinstance(value, kind):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{key} must be {names}, got {value!r}")


def known_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, hint in _field_types(cls).items():
        if dataclasses.is_dataclass(hint):
            keys += known_keys(hint, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        key = prefix + unknown[0]
        choices = [k for k in known_keys(Config) if k.startswith(prefix)] if prefix else list(types_)
        raise ConfigError(f"unknown key {key!r}; known: {', '.join(choices)}")
    kwargs = {}
    for name, value in data.items():
        hint = types_[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name} must be a table of settings, got {value!r}")
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, value, hint)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[str, Any]:
    """`model.n_feats=32` -> ("model.n_feats", 32); values are TOML literals, bare words strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (like model.n_feats=32), got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _merge(data: dict[str, Any], key: str, value: Any) -> None:
    if key not in known_keys():
        raise ConfigError(f"unknown key {key!r}; known: {', '.join(known_keys())}")
    section, name = key.split(".", 1)
    data.setdefault(section, {})[name] = value


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults file, then `path` on top, then dotted `overrides`; validated."""
    data = read_toml(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else {}
    if path is not None:
        for section, values in read_toml(path).items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
    for key, value in (overrides or {}).items():
        _merge(data, key, value)
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    try:
        return _build(Config, data)
    except TypeError as exc:  # a dataclass rejected an argument
        raise ConfigError(str(exc)) from None
