"""2 CPU ranks under torchrun: every decision that changes the update rule reaches every rank at the
same step, so the replicas stay identical; and the replica guard stops a run whose replicas differ."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import ckpt
from tests.trainer_support import ONE_THREAD, free_port, pause_and_steer, torchrun_trainer
from trainer.train.replicas import PERTURB_ENV

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo over TCP on POSIX")

# Every adaptive control on, at a cadence a few steps show: a plateau boost at the second
# validation (no gain can beat min_delta=1), loss weights checked every step, clip updates every 2.
ADAPTIVE = ["--set", "schedule.boost_patience=1", "--set", "schedule.boost_min_delta=1.0",
            "--set", "adaptive.warmup=1", "--set", "adaptive.every=1", "--set", "adaptive.cooldown=0",
            "--set", "clip.min_history=2", "--set", "clip.flush_every=2", "--set", "train.replica_check_every=2"]
BASICVSRPP = ["--set", "model.name=basicvsrpp", "--set", "model.n_feats=16", "--set", "model.n_blocks=1",
              "--set", "model.options.hr_channels=4", "--set", "model.options.spynet_fix_iter=3",
              "--set", "data.patch_size=16", "--set", "train.val_limit=1"]


def _digests(out: str) -> dict[str, str]:
    return dict(re.findall(r"\[rank (\d)\] stopped at step \d+; replica digest (\w+)", out))


def test_replicas_stay_identical_through_boost_set_adaptive_weights_clipping_and_spynet_unfreeze(tmp_path):
    pub, rep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cmd = torchrun_trainer(tmp_path / "run", "--pub", pub, "--rep", rep, "--max-iters", "8", "--val-every", "2",
                    "--save-every", "100", *BASICVSRPP, *ADAPTIVE)
    code, out = pause_and_steer(cmd, pub, rep, after=1, start_timeout=180, timeout=300, commands=[
        ("set", {"key": "schedule.lr_max", "value": 1e-3}), ("resume", None)])
    assert code == 0, out
    log = (tmp_path / "run" / "training.log").read_text()
    for kind in ("set", "lr_boost", "loss_weights"):
        assert re.search(rf"\s{kind}\s", log), f"no {kind} event:\n{log}"
    final = ckpt.load_checkpoint(ckpt.select_checkpoint(tmp_path / "run", "latest")["path"])
    assert final["step"] == 8 and final["train_state"]["clipper"]["clip"] != 1.5  # the clip value moved
    digests = _digests(out)
    print("final replica digests:", digests)
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], out


def test_replica_guard_stops_a_run_whose_ranks_differ_and_saves_rank_0s_state(tmp_path):
    cmd = torchrun_trainer(tmp_path / "run", "--pub", f"tcp://127.0.0.1:{free_port()}", "--rep",
                    f"tcp://127.0.0.1:{free_port()}", "--max-iters", "20", "--val-every", "100", "--save-every",
                    "100", "--set", "train.replica_check_every=4")
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
                          env={**ONE_THREAD, PERTURB_ENV: "1:3"})  # rank 1's weights change after step 3
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "replicas differ at step 4: rank(s) 1 hold other weights" in out, out
    assert "error: replicas differ at step 4" in done.stderr, out
    assert "trainer/" not in out, out  # no traceback of ours (torchrun prints its own)
    log = (tmp_path / "run" / "training.log").read_text()
    assert re.search(r"\serror\s+Training failed at step 4: ReplicaMismatch: replicas differ", log), log
    assert [(e["step"], e["type"]) for e in ckpt.list_checkpoints(tmp_path / "run")] == [(4, "emergency")]
    assert os.environ.get(PERTURB_ENV) is None  # the hook never leaks into this process
