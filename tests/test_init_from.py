"""`python -m trainer --init-from FILE`: a new run starts from a released file's (or a checkpoint's)
weights, validates at iteration 0, records its source in every checkpoint; bad files cost one line."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ckpt
from bench.bench_released import trained_file, write_clips
from ckpt.__main__ import main as ckpt_main
from tests import released_support as rs
from tests.evaluate_support import write_frames
from tests.net_support import free_port
from tests.trainer_support import ONE_THREAD, TINY_FLAGS, TINY_SETTINGS, as_flags, torchrun_trainer
from tests.video_support import shot, truncate
from trainer import data as datasets
from trainer.__main__ import build_parser, port_free, read_config
from trainer.config import load_config
from trainer.infer.load import instantiate
from trainer.models import build
from trainer.report.history import run_history
from trainer.train import validation
from trainer.train.init_from import model_settings, read_init_from
from trainer.train.loop import RunOptions, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"mid_channels": 16, "num_blocks": 1}


def clip_root(root: Path, frames: int = 3, size: int = 48) -> Path:
    """ROOT/train/CLIP and ROOT/val/CLIP: panning textured shots (real motion), x4 ground truth."""
    for i in range(4):
        write_frames(root / "train" / f"t{i}", shot(frames, size, size, seed=i, speed=4))
    write_frames(root / "val" / "v0", shot(frames, size, size, seed=50, speed=4))
    return root


def released_file(path: Path, seed: int = 1) -> Path:
    """A small x4 BasicVSR++ saved as BasicSR publishes it (params and params_ema)."""
    torch.manual_seed(seed)
    model = build("basicvsrpp", **SMALL)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ema = model.state_dict()
    return rs.save_basicsr(path, {k: v + 1 for k, v in ema.items()}, ema=ema)


def fine_tune(run_dir: Path, file: Path, data: Path, steps: int, **over) -> Trainer:
    """An in-process run of TINY_SETTINGS started from `file`, its model settings taken as the CLI does."""
    init = read_init_from(file)
    base = {**TINY_SETTINGS, "data.root": str(data), "model.num_frames": 3, "data.patch_size": 12,
            "train.max_iters": steps, "train.batch_size": 1, **over}
    cfg = load_config(overrides={**base, **model_settings(init, load_config(overrides=base))})
    opts = RunOptions(run_dir=run_dir, resume="never", pub=None, rep=None, interactive=False, console=False,
                      init_from=init)
    return Trainer(cfg, opts)


def test_fine_tune_validates_at_iteration_0_with_the_files_weights_and_records_the_source(tmp_path):
    file = released_file(tmp_path / "BasicVSRPP_x4_small.pth")
    trainer = fine_tune(tmp_path / "run", file, clip_root(tmp_path / "data"), steps=3, **{"checkpoint.keep_best": 5})
    assert trainer.run() == 0
    first = ckpt.load_checkpoint(tmp_path / "run" / ckpt.checkpoint_name(0, "best"))
    want = torch.load(file, weights_only=True)["params_ema"]
    assert all(torch.equal(first["model_state_dict"][k], v) for k, v in want.items())
    assert first["metrics"]["psnr"] is not None  # the validation at iteration 0 scored the file's model
    last = ckpt.load_checkpoint(tmp_path / "run" / ckpt.checkpoint_name(3))
    record = {"path": str(file), "name": file.name, "format": "basicsr", "params_key": "params_ema",
              "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
    assert first["init_from"] == last["init_from"] == record
    assert (last["model_name"], last["model_kwargs"]["scale"], last["model_kwargs"]["n_feats"]) == ("basicvsrpp", 4, 16)
    state = next(iter(last["optimizer_state_dict"]["state"].values()))
    assert int(state["step"]) == 3  # a fresh optimizer: three steps, not the file's
    assert trainer.setup.report.telemetry.latest_status()["init_from"] == file.name


def test_ckpt_list_says_what_a_run_was_fine_tuned_from(tmp_path, capsys):
    file = released_file(tmp_path / "BasicVSRPP_x4_small.pth")
    fine_tune(tmp_path / "run", file, clip_root(tmp_path / "data"), steps=1).run()
    assert ckpt_main(["list", str(tmp_path / "run")]) == 0
    assert f"fine-tuned from {file.name}" in capsys.readouterr().out
    assert ckpt.list_checkpoints(tmp_path / "run")[-1]["init_from"] == file.name


def _trainer_cli(run_dir: Path, *args: str, data: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "trainer", "--run-dir", str(run_dir), "--device", "cpu", "--no-monitor",
           "--set", "train.num_workers=0", "--set", "telemetry.tensorboard=false", "--set", "train.batch_size=1",
           "--set", "data.patch_size=12", "--set", "model.num_frames=3", "--set", "train.val_images=1",
           "--data", str(data), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ONE_THREAD, stdin=subprocess.DEVNULL)


def test_the_file_decides_the_model_and_a_resumed_run_ignores_init_from_with_a_line(tmp_path):
    file, data = released_file(tmp_path / "BasicVSRPP_x4_small.pth"), clip_root(tmp_path / "data")
    sockets = ["--pub", f"tcp://127.0.0.1:{free_port()}", "--rep", f"tcp://127.0.0.1:{free_port()}"]
    first = _trainer_cli(tmp_path / "run", "--init-from", str(file), "--max-iters", "1", *sockets, data=data)
    assert first.returncode == 0, first.stderr
    assert f"Starting from {file.name}: a BasicSR file, weights from 'params_ema'" in first.stdout
    assert (f"--init-from {file.name}: name=basicvsrpp, n_feats=16, n_blocks=1, scale=4 taken from the file "
            "(the config said name=vsrpp, n_feats=32, n_blocks=4, scale=3)") in first.stdout
    again = _trainer_cli(tmp_path / "run", "--init-from", str(file), "--max-iters", "2", "--resume", "latest",
                         *sockets, data=data)
    assert again.returncode == 0, again.stderr
    assert f"--init-from {file.name} ignored: resuming from {ckpt.checkpoint_name(1)}" in again.stdout
    assert ckpt.load_checkpoint(tmp_path / "run" / ckpt.checkpoint_name(2))["init_from"]["name"] == file.name


def _files_own_psnr(file: Path, flags: list[str]) -> float:
    """The validation PSNR of the file's model, loaded outside the trainer, on the run's validation set."""
    cfg, _ = read_config(build_parser().parse_args([*TINY_FLAGS, *flags]))
    _, val_ds = datasets.build_datasets(cfg.data)
    val_ds = torch.utils.data.Subset(val_ds, range(min(cfg.train.val_limit, len(val_ds))))
    loader = torch.utils.data.DataLoader(val_ds, batch_size=1)
    return validation.validate(instantiate(read_init_from(file).found), loader, "cpu",
                               metric_space=cfg.train.val_metric_space).psnr


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over TCP on POSIX")
def test_ddp_fine_tune_starts_both_ranks_from_the_file_and_validates_at_its_quality(tmp_path):
    file, data = released_file(tmp_path / "BasicVSRPP_x4_small.pth"), clip_root(tmp_path / "data")
    flags = ["--init-from", str(file), "--data", str(data), "--max-iters", "1", "--val-every", "100",
             "--save-every", "100", *as_flags({"data.patch_size": 12, "model.num_frames": 3, "train.batch_size": 1,
                                               "checkpoint.keep_best": 5})]
    cmd = torchrun_trainer(tmp_path / "run", "--pub", f"tcp://127.0.0.1:{free_port()}", "--rep",
                           f"tcp://127.0.0.1:{free_port()}", *flags)
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240, env=ONE_THREAD)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    # Same weights on both ranks: the guard compared them before the step-1 save, and each rank's own digest
    # at the end agrees (a rank left on its random init would still differ after the one averaged step).
    digests = dict(re.findall(r"\[rank (\d)\] stopped at step 1; replica digest (\w+)", out))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], out
    first = ckpt.load_checkpoint(tmp_path / "run" / ckpt.checkpoint_name(0, "best"))
    want = torch.load(file, weights_only=True)["params_ema"]
    assert all(torch.equal(first["model_state_dict"][k], v) for k, v in want.items())
    assert first["metrics"]["psnr"] == pytest.approx(_files_own_psnr(file, flags), abs=1e-6)
    record = {"path": str(file), "name": file.name, "format": "basicsr", "params_key": "params_ema",
              "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
    last = ckpt.load_checkpoint(tmp_path / "run" / ckpt.checkpoint_name(1))
    assert first["init_from"] == last["init_from"] == record


def test_options_of_the_files_model_are_accepted_on_a_config_that_names_another(tmp_path, capsys):
    file = released_file(tmp_path / "BasicVSRPP_x4_small.pth")
    args = build_parser().parse_args(["--init-from", str(file), "--set", "model.options.spynet_fix_iter=0"])
    cfg, init = read_config(args)  # the defaults name vsrpp, which has no spynet_fix_iter
    assert (cfg.model.name, cfg.model.scale, cfg.model.options["spynet_fix_iter"]) == ("basicvsrpp", 4, 0)
    assert init.found.source.params_key == "params_ema"
    assert "taken from the file" in capsys.readouterr().out


def _deblur(path: Path) -> Path:
    state = build("basicvsrpp", **SMALL).state_dict()
    state["feat_extract.0.weight"] = torch.zeros(16, 3, 3, 3)  # strided input convs: is_low_res_input=False
    return rs.save_mmagic(path, state)


BAD_FILES = {
    "missing": (lambda p: p, "no checkpoint file"),
    "truncated": (lambda p: truncate(released_file(p), 0.5), "corrupt"),
    "not a model": (lambda p: torch.save({"meta": {"epoch": 3}}, p) or p, "holds no model weights"),
    "does not fit": (_deblur, "is_low_res_input=False"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_init_from_file_is_one_line_exit_2_before_data_run_folder_or_sockets(tmp_path, kind):
    make, says = BAD_FILES[kind]
    file = make(tmp_path / "released.pth")
    ports = [free_port() for _ in range(3)]
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "--init-from", str(file), "--run-dir", str(run_dir),
         "--data", str(tmp_path / "no-such-data"), "--pub", f"tcp://127.0.0.1:{ports[0]}",
         "--rep", f"tcp://127.0.0.1:{ports[1]}", "--monitor-port", str(ports[2]), "--device", "cpu"],
        capture_output=True, text=True, timeout=120, env=ONE_THREAD, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --init-from") and says in lines[0], proc.stderr
    assert str(file) in lines[0] and proc.stdout == ""  # no data error, no monitor line
    assert not run_dir.exists()
    assert all(port_free(port) for port in ports)


def test_finetune_recipe_trains_spynet_from_the_start_at_its_reduced_lr_below_the_scratch_lr(tmp_path):
    configs = Path(__file__).resolve().parents[1] / "trainer" / "configs"
    init = read_init_from(released_file(tmp_path / "BasicVSRPP_x4_small.pth"))
    recipe = load_config(configs / "basicvsrpp_finetune.toml")
    cfg = load_config(configs / "basicvsrpp_finetune.toml", model_settings(init, recipe))
    assert cfg.schedule.lr_max < load_config(configs / "basicvsrpp_reds.toml").schedule.lr_max
    assert (cfg.model.name, cfg.model.n_feats, cfg.model.n_blocks, cfg.model.scale) == ("basicvsrpp", 16, 1, 4)
    model = build(cfg.model.name, **cfg.model.kwargs())
    init.apply(model)
    assert model.set_flow_trainable(0)  # no frozen warm-up: SPyNet is already trained
    spynet = next(g for g in model.param_groups(cfg.schedule.lr_max) if g["name"] == "spynet")
    assert spynet["lr_mult"] == 0.25


@pytest.fixture(scope="session")
def basicsr_trained(tmp_path_factory):
    """A small BasicVSR++ trained by BasicSR's own code (bench_released.trained_file: 45 steps on panning
    shots, x4, kept in the cache folder), and clip folders: the shots it trained on and two held-out ones."""
    cls = rs.basicsr_class()
    if cls is None:
        pytest.skip("basicsr==1.4.2 sdist unavailable: not cached in ~/.cache/vsrpp and `pip download` failed")
    return trained_file(cls), write_clips(tmp_path_factory.mktemp("basicsr_trained") / "data")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_fine_tuning_a_basicsr_trained_model_starts_well_above_bilinear_and_stays_close(tmp_path, basicsr_trained):
    file, data = basicsr_trained
    trainer = fine_tune(tmp_path / "run", file, data, steps=24, **{
        "data.patch_size": 24, "data.degrade": "area", "schedule.lr_max": 5e-5, "schedule.warmup_iters": 0,
        "model.name": "basicvsrpp", "model.options.spynet_fix_iter": 0, "train.val_every": 24, "train.val_limit": 0,
        "train.adaptive_loss": False})
    assert trainer.run() == 0
    validations = run_history(tmp_path / "run")["validations"]  # the run's record, as `history` reads it
    first, last = validations[0], validations[-1]
    assert (first["iteration"], last["iteration"]) == (0, 24)
    assert first["psnr"] > first["baseline_psnr"] + 1.0  # the released model's quality from iteration 0
    assert abs(last["psnr"] - first["psnr"]) < 0.3  # held-out frames: within a fraction of a dB
    start = torch.load(file, weights_only=True)["params"]
    end = ckpt.load_checkpoint(tmp_path / "run" / ckpt.checkpoint_name(24))["model_state_dict"]
    moved = sum((end[k].double() - v.double()).square().sum() for k, v in start.items()).sqrt()
    size = sum(v.double().square().sum() for v in start.values()).sqrt()
    assert moved / size < 0.02  # the weights stay close to the file's


def test_the_dashboards_run_listing_says_fine_tuned_from_the_status_field():
    from monitor.recorder import Recorder, runs_listing
    from monitor.run import RunState
    from monitor.state import MonitorState
    from monitor.store import Store

    store = Store()
    try:
        run = RunState(name="r1", source="tcp://127.0.0.1:1", display="finetune@box")
        status = {"v": 1, "run": "finetune@box", "seq": 1, "ts": 100.0, "iteration": 3, "total_loss": 0.1,
                  "learn_rate": 1e-4, "time_remaining": "00:00:01", "iter_speed": 1.0, "gpu_memory": 0.0,
                  "best_score": None, "is_validating": False, "is_training": True, "timestamp": 100.0,
                  "is_paused": False, "max_iterations": 10, "state": "training", "init_from": "BasicVSRPP_x4_REDS.pth"}
        run.apply("status", status)
        Recorder(store, clock=lambda: 100.0).frame(run, "status", status)
        store.flush()
        listed = runs_listing(store.runs(), MonitorState(), now=100.0)
        assert [r.get("init_from") for r in listed] == ["BasicVSRPP_x4_REDS.pth"]
    finally:
        store.close()
