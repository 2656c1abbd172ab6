"""Helpers shared by the trainer's tests: tiny settings, an in-process trainer, a `python -m trainer`
process with its sockets, and exact comparisons of checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import ckpt
import protocol
from tests.net_support import free_port
from trainer.config import load_config
from trainer.report.control import Action
from trainer.train.loop import RunOptions, Trainer

# The tiny run of every trainer test (the one definition): a model and data small enough for a step in
# milliseconds (checkpoints of ~70 KB), one torch thread, a short validation, no TensorBoard.
TINY_RUN = {"model.n_feats": 4, "model.n_blocks": 2, "data.patch_size": 8, "train.batch_size": 2,
            "train.val_limit": 2, "train.val_images": 1, "telemetry.tensorboard": False, "train.cpu_threads": 1}
# In process: validations and saves only when a test asks, every adaptive control active early.
TINY_SETTINGS = {**TINY_RUN, "train.val_every": 1000, "train.save_every": 1000, "adaptive.warmup": 2,
                 "adaptive.every": 2, "adaptive.cooldown": 2, "clip.min_history": 2, "clip.flush_every": 2,
                 "schedule.warmup_iters": 2}
# As a `python -m trainer` process: on the CPU, without data workers.
TINY_PROCESS = {**TINY_RUN, "train.num_workers": 0, "train.device": "cpu"}


def as_flags(settings: dict[str, Any]) -> list[str]:
    """`--set KEY=VALUE` for each setting (TOML literals: booleans in lower case)."""
    return [arg for key, value in settings.items()
            for arg in ("--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}")]


# `python -m trainer` on the tiny run, without the web monitor.
TINY_FLAGS = [*as_flags(TINY_PROCESS), "--no-monitor"]
# Two torch threads per process spin badly on a busy 2-core box; tests train tiny models anyway.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


class ScriptedCommands:
    """Stands in for the command server: at the top of iteration `step` the loop drains `actions`."""

    def __init__(self, trainer: Trainer, script: dict[int, list[Action]]) -> None:
        self.trainer, self.script = trainer, dict(script)

    def drain(self) -> list[Action]:
        return self.script.pop(self.trainer.step, [])

    def close(self) -> None:
        pass


class StopAt(ScriptedCommands):
    """Asks for `stop` at the top of iteration `step`."""

    def __init__(self, trainer: Trainer, step: int) -> None:
        super().__init__(trainer, {step: [Action("stop")]})
        self.step = step


def make_trainer(run_dir: Path, resume: str = "never", stop_at: int | None = None, **over: Any) -> Trainer:
    """An in-process trainer of TINY_SETTINGS for 6 steps (`over` wins), without sockets or console."""
    cfg = load_config(overrides={**TINY_SETTINGS, "train.max_iters": 6, **over})
    opts = RunOptions(run_dir=run_dir, resume=resume, pub=None, rep=None, interactive=False, console=False)
    trainer = Trainer(cfg, opts)
    if stop_at is not None:
        trainer.setup.report.controller = StopAt(trainer, stop_at)
    return trainer


def final_state(run_dir: Path) -> dict:
    return ckpt.load_checkpoint(ckpt.select_checkpoint(run_dir, "latest")["path"])


def assert_same_training_state(a: dict, b: dict) -> None:
    """Weights, optimizer state, train and data state are equal, bit for bit."""
    for key, value in a["model_state_dict"].items():
        assert torch.equal(value, b["model_state_dict"][key]), key
    for x, y in zip(a["optimizer_state_dict"]["state"].values(), b["optimizer_state_dict"]["state"].values(),
                    strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert a["train_state"] == b["train_state"] and a["data_state"] == b["data_state"]


def assert_same_checkpoint(a: Any, b: Any, where: str = "checkpoint", ignore: tuple[str, ...] = ("timestamp",)) -> None:
    """Equal part by part, tensors bit for bit (dtype and shape too); `ignore`d top-level keys aside."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        keys = set(a) - set(ignore)
        assert isinstance(b, dict) and keys == set(b) - set(ignore), (where, sorted(keys ^ (set(b) - set(ignore))))
        for key in keys:
            assert_same_checkpoint(a[key], b[key], f"{where}[{key!r}]", ())
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_checkpoint(x, y, f"{where}[{i}]", ())
    else:
        assert a == b, (where, a, b)


def start_trainer(run_dir: Path, *extra: str) -> tuple[subprocess.Popen, str, str]:
    """`python -m trainer` on TINY_FLAGS with its own sockets (endless unless `extra` says otherwise)."""
    pub, rep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "trainer", "--run-dir", str(run_dir), "--pub", pub, "--rep", rep,
           "--max-iters", "100000", "--val-every", "100000", "--save-every", "100000", *TINY_FLAGS, *extra]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=ONE_THREAD, start_new_session=True)
    return proc, pub, rep


def torchrun_trainer(run_dir: Path, *extra: str, ranks: int = 2) -> list[str]:
    """The command line of `torchrun --nproc-per-node RANKS -m trainer` on TINY_FLAGS (CPU ranks, gloo)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-addr",
            "127.0.0.1", "--master-port", str(free_port()), "-m", "trainer", "--run-dir", str(run_dir), *TINY_FLAGS,
            *extra]


def wait_for(sub: protocol.Subscriber, pred, timeout: float = 60.0) -> dict:
    """The first message `pred(topic, payload)` accepts; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.recv(200)
        if msg is not None and pred(*msg):
            return msg[1]
    raise AssertionError("expected message never arrived")


def pause_and_steer(cmd: list[str], pub: str, rep: str, *, after: int, commands: list[tuple[str, dict | None]],
                    start_timeout: float, timeout: float) -> tuple[int, str]:
    """Run the trainer `cmd` (sockets `pub`/`rep`), pause it once it has trained `after` steps (within
    `start_timeout` s), send `commands` (each must be accepted), and return its exit code and output once it
    has ended (within `timeout` s more)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=ONE_THREAD)
    sub = protocol.Subscriber(pub)
    client = protocol.CommandClient(rep, timeout_ms=3000, retries=2)
    try:
        wait_for(sub, lambda t, m: t == "status" and m["iteration"] >= after, timeout=start_timeout)
        assert client.request("pause")["ok"]
        wait_for(sub, lambda t, m: t == "status" and m["is_paused"])
        for name, args in commands:
            assert client.request(name, args)["ok"], name
        out, _ = proc.communicate(timeout=timeout)
    finally:
        sub.close()
        client.close()
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out
