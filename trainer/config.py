"""Trainer configuration: nested dataclasses, a TOML file, `--set` overrides.

Each section validates itself in `__post_init__`; `load_config` turns any
mistake into a `ConfigError` that names the key and what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpt.retention import KEEP_BEST, KEEP_LAST
from trainer.data import DataConfig
from trainer.metrics import METRIC_SPACES
from trainer.train.adaptive import AdaptiveConfig, ClipConfig
from trainer.train.divergence import DivergenceConfig
from trainer.train.losses import LossConfig
from trainer.train.schedule import ScheduleConfig


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
    # the chosen model's own arguments ([model.options] / --set model.options.KEY=V), checked
    # against its factory's signature: basicvsrpp's mid_channels, spynet_fix_iter, spynet_lr_mul, ...
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"model.name must be a model name, got {self.name!r}")
        for key in GENERIC_MODEL_KEYS:
            _positive_int("model", key, getattr(self, key))
        if not isinstance(self.options, dict):
            raise ConfigError(f"model.options must be a table of model arguments, got {self.options!r}")

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `trainer.models.build(name, **kwargs)` (what checkpoints store)."""
        return {**{k: getattr(self, k) for k in GENERIC_MODEL_KEYS}, **self.options}


GENERIC_MODEL_KEYS = ("num_frames", "n_feats", "n_blocks", "scale")


def model_key(name: str) -> str:
    """The dotted config key of model argument `name`: model.NAME when generic, else model.options.NAME."""
    return f"model.{name}" if name in GENERIC_MODEL_KEYS else f"model.options.{name}"


@dataclass
class TrainConfig:
    max_iters: int = 600
    batch_size: int = 16
    accum_steps: int = 1
    val_every: int = 200
    save_every: int = 200
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto = bf16 on CUDA when supported, else fp16 + GradScaler; off on CPU
    num_workers: int = 1
    cpu_threads: int = 0  # torch threads on CPU; 0 = $OMP_NUM_THREADS, else the cores left after data workers
    val_images: int = 4  # comparison images written per validation
    val_limit: int = 0  # validate on the first N validation samples only (0 = all)
    adaptive_loss: bool = True  # the adaptive loss weights of [adaptive]
    val_metric_space: str = "rgb"  # validation PSNR/SSIM: rgb, or y as papers (8-bit BT.601 luma, scale border)
    replica_check_every: int = 100  # DDP: compare the ranks' weights every N steps (and before saves); 0 = saves only

    def __post_init__(self) -> None:
        for key in ("max_iters", "batch_size", "accum_steps", "val_every", "save_every", "val_images"):
            _positive_int("train", key, getattr(self, key))
        _positive_int("train", "seed", self.seed, zero_ok=True)
        _positive_int("train", "num_workers", self.num_workers, zero_ok=True)
        _positive_int("train", "cpu_threads", self.cpu_threads, zero_ok=True)
        _positive_int("train", "val_limit", self.val_limit, zero_ok=True)
        _positive_int("train", "replica_check_every", self.replica_check_every, zero_ok=True)
        _choice("train", "device", self.device, ("auto", "cpu", "cuda"))
        _choice("train", "amp", self.amp, ("auto", "bf16", "fp16", "off"))
        _choice("train", "val_metric_space", self.val_metric_space, METRIC_SPACES)


@dataclass
class CheckpointConfig:
    keep_last: int = KEEP_LAST
    keep_best: int = KEEP_BEST

    def __post_init__(self) -> None:
        _positive_int("checkpoint", "keep_last", self.keep_last)
        _positive_int("checkpoint", "keep_best", self.keep_best, zero_ok=True)


@dataclass
class TelemetryConfig:
    status_hz: float = 10.0
    heartbeat_s: float = 0.5
    log_every_s: float = 10.0  # plain progress lines without a TTY
    tensorboard: bool = True

    def __post_init__(self) -> None:
        _positive_float("telemetry", "status_hz", self.status_hz)
        _positive_float("telemetry", "heartbeat_s", self.heartbeat_s)
        if self.heartbeat_s > 1.0:
            raise ConfigError(f"telemetry.heartbeat_s must be <= 1.0 s, got {self.heartbeat_s!r}")
        _positive_float("telemetry", "log_every_s", self.log_every_s)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)  # non-finite steps, rollbacks

    def __post_init__(self) -> None:
        """The DERIVED keys follow their sources, also in a Config built in code."""
        self.data = dataclasses.replace(self.data, num_frames=self.model.num_frames, scale=self.model.scale,
                                        many_to_many=_many_to_many(self.model.name))
        self.schedule = dataclasses.replace(self.schedule, max_iters=self.train.max_iters)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Keys that follow another section's value; users set the source instead.
DERIVED = {
    "data.num_frames": "model.num_frames",
    "data.scale": "model.scale",
    "data.many_to_many": "model.name",
    "schedule.max_iters": "train.max_iters",
}
# Keys that no longer do anything: a config that sets one still loads, with one warning line per process.
RETIRED = {
    "telemetry.history": "it no longer has an effect (the history comes from the run folder's metrics.jsonl)",
}
_warned: set[str] = set()


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
        base = typing.get_origin(kind) or kind
        if isinstance(base, type) and isinstance(value, base):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{key} must be {names}, got {value!r}")


def known_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, hint in _field_types(cls).items():
        if dataclasses.is_dataclass(hint):
            keys += known_keys(hint, f"{prefix}{name}.")
        elif prefix + name not in DERIVED:
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
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:  # a component's own validation
        raise ConfigError(str(exc)) from None


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
    if key.startswith("model.options.") and len(key.split(".")) == 3:
        data.setdefault("model", {}).setdefault("options", {})[key.split(".")[2]] = value
        return
    if key in DERIVED:
        raise ConfigError(f"{key} follows {DERIVED[key]}; set that instead")
    if key not in known_keys() and key not in RETIRED:
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
    """The defaults (Config()), then the TOML file `path` on top, then dotted `overrides`; validated."""
    data = read_toml(path) if path is not None else {}
    for key, value in (overrides or {}).items():
        _merge(data, key, value)
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a nested dict (TOML layout) into a Config (which fills in the derived keys)."""
    for key, source in DERIVED.items():
        section, name = key.split(".")
        if isinstance(data.get(section), dict) and name in data[section]:
            raise ConfigError(f"{key} follows {source}; set that instead")
    data = _without_retired(data)
    _check_model_options(_build(ModelConfig, data.get("model", {}), "model."))
    return _build(Config, data)


def _without_retired(data: dict[str, Any]) -> dict[str, Any]:
    """`data` less the RETIRED keys it sets (the caller's dict untouched), each warned about once."""
    data = dict(data)
    for key, why in RETIRED.items():
        section, name = key.split(".")
        if isinstance(data.get(section), dict) and name in data[section]:
            data[section] = {k: v for k, v in data[section].items() if k != name}
            if key not in _warned:
                _warned.add(key)
                print(f"warning: {key} is ignored: {why}", file=sys.stderr)
    return data


def _many_to_many(name: str) -> bool:
    from trainer import models

    if name not in models.MODEL_INFO:
        raise ConfigError(f"model.name must be one of {', '.join(models.known_models())}; got {name!r}")
    return bool(models.MODEL_INFO[name]["many_to_many"])


def _check_model_options(model: ModelConfig) -> None:
    allowed = _model_arguments(model.name)
    if allowed is None:
        return
    allowed -= set(GENERIC_MODEL_KEYS)
    for key in model.options:
        if key not in allowed:
            raise ConfigError(f"model.options.{key} is not an argument of model {model.name!r}; "
                              f"allowed: {', '.join(sorted(allowed)) or 'none'}")


def _model_arguments(name: str) -> set[str] | None:
    """Keyword arguments the model's factory takes (through `**kwargs`: those of the class it
    returns); None when they cannot be known."""
    from trainer import models

    factory = models._FACTORIES.get(name)  # noqa: SLF001 - the registry keeps no signatures itself
    if factory is None:
        return None  # an unknown name is reported with the known ones later
    names: set[str] = set()
    for target in (factory, typing.get_type_hints(factory).get("return")):
        if not callable(target):
            return None
        params = inspect.signature(target).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return None


DEFAULTS_FILE = Path(__file__).parent / "configs" / "default.toml"
_DEFAULTS_HEADER = """\
# VSR++ defaults: the run `python -m trainer` trains without --config (a small model that trains on the
# embedded sample set in a few minutes on 2 CPU cores). GENERATED from Config() in trainer/config.py by
# `python -m trainer.config --write-defaults`: edit the dataclasses, not this file (a test fails when it is
# stale). Other config files hold only what differs; any key can be set with --set section.key=VALUE.
# Derived keys follow their source (set that instead):{derived}
"""


def defaults_toml() -> str:
    """Config()'s settable keys as TOML, section by section, each with its dataclass field's comment."""
    derived = "".join(f"\n#   {key} <- {source}" for key, source in DERIVED.items())
    lines = [_DEFAULTS_HEADER.format(derived=derived).rstrip("\n")]
    defaults = Config()
    for section in dataclasses.fields(Config):
        value = getattr(defaults, section.name)
        notes = _field_comments(type(value))
        lines.append(f"\n[{section.name}]")
        for name, default in dataclasses.asdict(value).items():
            if f"{section.name}.{name}" in DERIVED:
                continue
            if default is None:  # TOML has no null
                lines.append(f"# {name}: unset" + (f" ({notes[name]})" if name in notes else ""))
            else:
                lines.append(f"{name} = {json.dumps(default)}" + (f"  # {notes[name]}" if name in notes else ""))
    return "\n".join(lines) + "\n"


def _field_comments(cls: type) -> dict[str, str]:
    """The `# comment` after each field of a dataclass's source."""
    source = inspect.getsource(cls)
    return dict(re.findall(r"^    (\w+): [^\n#]*#\s*([^\n]*)$", source, re.MULTILINE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.config", description="The trainer's defaults.")
    parser.add_argument("--write-defaults", action="store_true", help=f"write {DEFAULTS_FILE.name} from Config()")
    args = parser.parse_args(argv)
    if args.write_defaults:
        DEFAULTS_FILE.write_text(defaults_toml())
        print(f"wrote {DEFAULTS_FILE}")
    else:
        print(defaults_toml(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
