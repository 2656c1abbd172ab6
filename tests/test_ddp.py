"""`torchrun --nproc-per-node 2 -m trainer` on CPU (gloo): commands reach every rank at the same step."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import ckpt
from tests.trainer_support import ONE_THREAD, free_port, pause_and_steer, torchrun_trainer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo over TCP on POSIX")


def test_stop_command_reaches_both_ranks_at_the_same_step(tmp_path):
    pub, rep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cmd = torchrun_trainer(tmp_path / "run", "--pub", pub, "--rep", rep,
                           "--max-iters", "100000", "--val-every", "100000", "--save-every", "100000",
                           # rank 0's loss weights every step
                           "--set", "adaptive.warmup=1", "--set", "adaptive.every=1")
    code, out = pause_and_steer(cmd, pub, rep, after=2, commands=[("stop", None)], start_timeout=120,
                                timeout=120)
    assert code == 0, out
    stops = dict(re.findall(r"\[rank (\d)\] stopped at step (\d+)", out))
    assert set(stops) == {"0", "1"} and stops["0"] == stops["1"], out
    entries = ckpt.list_checkpoints(tmp_path / "run")
    assert [e["step"] for e in entries] == [int(stops["0"])]
    assert ckpt.load_checkpoint(entries[0]["path"])["data_state"]["position"] % 2 == 0  # two ranks' samples


def test_basicvsrpp_trains_under_ddp_across_the_spynet_unfreeze(tmp_path):
    """SPyNet has no gradients while frozen; DDP must accept that, then train it after fix_iter."""
    cmd = torchrun_trainer(tmp_path / "run",
                           "--pub", f"tcp://127.0.0.1:{free_port()}", "--rep", f"tcp://127.0.0.1:{free_port()}",
                           "--max-iters", "4", "--val-every", "100", "--save-every", "100",
                           "--set", "model.name=basicvsrpp", "--set", "model.n_feats=16", "--set", "model.n_blocks=1",
                           "--set", "model.options.hr_channels=4", "--set", "model.options.spynet_fix_iter=2",
                           "--set", "data.patch_size=16", "--set", "train.val_limit=1")
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ONE_THREAD,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [e["step"] for e in ckpt.list_checkpoints(tmp_path / "run") if e["type"] == "regular"] == [4]
