from __future__ import annotations

import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest

from trainer import config
from trainer.__main__ import build_parser, check_resume_spec, config_from_args
from trainer.config import (
    DEFAULTS_FILE,
    Config,
    ConfigError,
    ModelConfig,
    TelemetryConfig,
    TrainConfig,
    defaults_toml,
    known_keys,
    load_config,
    parse_override,
)
from trainer.report.control import with_setting


def test_default_file_loads_and_matches_the_dataclass_defaults_keys():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.model.name == "vsrpp"
    assert set(cfg.to_dict()) == {"model", "data", "schedule", "loss", "adaptive", "clip", "train", "checkpoint",
                                  "telemetry", "divergence"}


def test_negative_batch_size_error_names_the_key_and_value():
    with pytest.raises(ConfigError, match=r"train.batch_size must be a positive int, got -1"):
        load_config(overrides={"train.batch_size": -1})


def test_unknown_key_error_lists_the_known_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'model.nfeats'; known: .*model.n_feats"):
        load_config(overrides={"model.nfeats": 32})


def test_unknown_key_in_a_toml_file_is_rejected(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nmax_itres = 5\n")
    with pytest.raises(ConfigError, match="unknown key 'train.max_itres'"):
        load_config(path)


def test_a_config_that_sets_the_retired_telemetry_history_still_loads_with_one_warning_line(
        tmp_path, capsys, monkeypatch):
    """telemetry.history sized an in-memory history the `history` command no longer reads: a user's old
    config (file or --set) keeps working, says once that it has no effect, and is otherwise the defaults."""
    monkeypatch.setattr(config, "_warned", set())
    path = tmp_path / "old.toml"
    path.write_text("[telemetry]\nhistory = 500\nstatus_hz = 5.0\n")
    args = build_parser().parse_args(["--config", str(path), "--set", "telemetry.history=100"])
    cfg = config_from_args(args)
    cfg = config_from_args(args)  # --init-from builds the config more than once: still one line
    assert cfg.telemetry == TelemetryConfig(status_hz=5.0)
    assert "history" not in cfg.to_dict()["telemetry"] and "telemetry.history" not in known_keys()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "telemetry.history" in lines[0] and "no longer has an effect" in lines[0]
    assert "run folder" in lines[0]
    with pytest.raises(ConfigError, match="unknown key 'telemetry.histroy'"):  # other unknown keys: still refused
        load_config(overrides={"telemetry.histroy": 5})


def test_choice_error_lists_allowed_values():
    with pytest.raises(ConfigError, match="train.device must be one of auto, cpu, cuda; got 'tpu'"):
        load_config(overrides={"train.device": "tpu"})


def test_wrong_type_is_rejected_and_int_is_accepted_for_float():
    with pytest.raises(ConfigError, match="train.max_iters must be int"):
        load_config(overrides={"train.max_iters": 1.5})
    assert load_config(overrides={"schedule.lr_max": 1}).schedule.lr_max == 1.0


def test_broken_toml_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_set_values_are_toml_literals_and_bare_words_are_strings():
    assert parse_override("model.n_feats=32") == ("model.n_feats", 32)
    assert parse_override("schedule.lr_max=1e-3") == ("schedule.lr_max", 1e-3)
    assert parse_override("loss.adaptive=false") == ("loss.adaptive", False)
    assert parse_override("model.name=basicvsrpp") == ("model.name", "basicvsrpp")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("model.n_feats")


def test_cli_flags_override_file_and_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nmax_iters = 50\nval_every = 7\n")
    args = build_parser().parse_args(["--config", str(path), "--max-iters", "9", "--set",
                                      "model.n_feats=8", "--seed", "3", "--data", "/d"])
    cfg = config_from_args(args)
    assert (cfg.train.max_iters, cfg.train.val_every, cfg.model.n_feats) == (9, 7, 8)
    assert (cfg.train.seed, cfg.data.root) == (3, "/d")


def test_resume_spec_is_checked():
    for spec in ("ask", "latest", "best", "never", "1200", "runs/x/checkpoint_step_0000100.pth"):
        check_resume_spec(spec)
    with pytest.raises(ConfigError, match="--resume must be"):
        check_resume_spec("newest")


def test_live_settings_are_validated_like_the_config():
    cfg = load_config()
    assert with_setting(cfg, "train.val_every", 5).train.val_every == 5
    assert with_setting(cfg, "schedule.lr_max", 1).schedule.lr_max == 1.0
    with pytest.raises(ValueError, match="cannot be set while training"):
        with_setting(cfg, "model.n_feats", 8)
    with pytest.raises(ValueError, match="positive int"):
        with_setting(cfg, "train.save_every", 0)
    with pytest.raises(ValueError, match="lr_min <= lr_max"):
        with_setting(cfg, "schedule.lr_min", 1.0)
    with pytest.raises(ValueError, match="must be int"):
        with_setting(cfg, "train.val_every", "ten")


def test_every_config_key_is_reachable_with_set():
    for key in known_keys():
        section, name = key.split(".")
        value = getattr(getattr(load_config(), section), name)
        assert getattr(getattr(load_config(overrides={key: value}), section), name) == value


def test_a_run_with_and_without_the_default_config_file_has_the_same_configuration():
    default_toml = Path(__file__).resolve().parents[1] / "trainer" / "configs" / "default.toml"
    parser = build_parser()
    plain = config_from_args(parser.parse_args([]))
    assert config_from_args(parser.parse_args(["--config", str(default_toml)])) == plain == Config()


def test_the_default_config_file_is_generated_from_config_and_current():
    written = DEFAULTS_FILE.read_text()
    assert written == defaults_toml(), "stale: run python -m trainer.config --write-defaults"
    stated = {f"{section}.{key}" for section, table in tomllib.loads(written).items() for key in table}
    unset = {f"{section}.{key}" for section, table in asdict(Config()).items() for key, v in table.items() if v is None}
    assert sorted(stated | unset) == sorted(known_keys())


def test_derived_keys_follow_their_sources_in_a_config_built_in_code():
    cfg = Config(model=ModelConfig(num_frames=3, scale=2), train=TrainConfig(max_iters=7))
    assert (cfg.data.num_frames, cfg.data.scale, cfg.schedule.max_iters) == (3, 2, 7)
