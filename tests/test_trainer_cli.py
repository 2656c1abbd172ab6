"""`python -m trainer` as users run it: real sockets, real signals, real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import ckpt
import protocol
from tests.trainer_support import ONE_THREAD, TINY_FLAGS, free_port, start_trainer, wait_for

# Old name, kept while other test modules still import it (and the helpers above) from here.


@pytest.fixture
def trainer(tmp_path):
    proc, pub, rep = start_trainer(tmp_path / "run")
    sub = protocol.Subscriber(pub)
    client = protocol.CommandClient(rep, timeout_ms=3000, retries=2)
    yield proc, sub, client, tmp_path / "run"
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    sub.close()
    client.close()


def test_remote_commands_steer_a_running_trainer_and_stop_saves_then_exits_0(trainer):
    proc, sub, client, run_dir = trainer
    wait_for(sub, lambda t, m: t == "status" and m["iteration"] >= 2)
    assert client.request("ping")["ok"]
    status = client.request("status")["status"]
    assert status["is_training"] and status["max_iterations"] == 100000
    bad = client.request("set", {"key": "model.n_feats", "value": 8})
    assert not bad["ok"] and "cannot be set" in bad["error"]
    assert client.request("set", {"key": "train.val_every", "value": 50})["ok"]
    wait_for(sub, lambda t, m: t == "event" and m["kind"] == "set")
    assert client.request("pause")["ok"]
    paused = wait_for(sub, lambda t, m: t == "status" and m["is_paused"])
    wait_for(sub, lambda t, m: t == "heartbeat" and m["state"] == "paused")
    assert client.request("save")["ok"]  # served while paused
    saved = wait_for(sub, lambda t, m: t == "event" and m["kind"] == "checkpoint_saved")
    assert saved["data"]["step"] == paused["iteration"]
    listed = client.request("checkpoints")["checkpoints"]
    assert [c["step"] for c in listed] == [paused["iteration"]]
    assert client.request("history")["history"]
    assert client.request("resume")["ok"]
    wait_for(sub, lambda t, m: t == "status" and m["iteration"] > paused["iteration"])
    assert client.request("stop")["ok"]
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    last = ckpt.select_checkpoint(run_dir, "latest")
    assert last["step"] > paused["iteration"] and last["type"] == "regular"
    log = (run_dir / "training.log").read_text()
    for kind in ("started", "paused", "resumed", "set", "checkpoint_saved", "stopping"):
        assert kind in log


def test_sigterm_to_the_process_group_saves_an_emergency_checkpoint_with_the_real_step(tmp_path):
    """As a job scheduler or a closing terminal sends it: to the trainer and its data workers."""
    sig = signal.SIGTERM
    proc, pub, _ = start_trainer(tmp_path / "run", "--set", "train.num_workers=2")
    sub = protocol.Subscriber(pub)
    try:
        wait_for(sub, lambda t, m: t == "status" and m["iteration"] >= 3)
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig and "Traceback" not in out, out
    entries = ckpt.list_checkpoints(tmp_path / "run")
    assert [e["type"] for e in entries] == ["emergency"] and entries[0]["status"] == "ok"
    assert entries[0]["step"] >= 3
    state = ckpt.load_checkpoint(entries[0]["path"])
    assert state["step"] == entries[0]["step"] and state["data_state"]["position"] > 0
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_bad_config_is_one_clear_line_without_traceback(tmp_path, capsys):
    from trainer.__main__ import main

    assert main(["--run-dir", str(tmp_path), "--no-monitor", "--set", "train.batch_size=-1"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size must be a positive int, got -1" in err and "Traceback" not in err
    assert main(["--run-dir", str(tmp_path), "--no-monitor", "--set", "model.nfeats=3"]) == 2
    assert "unknown key 'model.nfeats'; known:" in capsys.readouterr().err


def test_a_missing_dataset_is_reported_without_claiming_the_run_finished(tmp_path):
    done = subprocess.run([sys.executable, "-m", "trainer", "--run-dir", str(tmp_path / "run"), "--data",
                           str(tmp_path / "nonexistent"), "--pub", f"tcp://127.0.0.1:{free_port()}", "--rep",
                           f"tcp://127.0.0.1:{free_port()}", *TINY_FLAGS],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ONE_THREAD, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "nonexistent" in done.stderr and "Traceback" not in done.stderr
    assert "Finished" not in done.stdout + done.stderr


def test_a_resumed_runs_status_says_the_resume_step_from_its_first_frame_and_never_goes_back(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.run([sys.executable, "-m", "trainer", "--run-dir", str(run_dir), "--max-iters", "4",
                            "--pub", f"tcp://127.0.0.1:{free_port()}", "--rep", f"tcp://127.0.0.1:{free_port()}",
                            *TINY_FLAGS], stdin=subprocess.DEVNULL, capture_output=True, env=ONE_THREAD, timeout=120)
    assert first.returncode == 0
    pub = f"tcp://127.0.0.1:{free_port()}"
    sub = protocol.Subscriber(pub)  # listening before the trainer starts
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "--run-dir", str(run_dir), "--resume", "latest",
                             "--max-iters", "8", "--pub", pub, "--rep", f"tcp://127.0.0.1:{free_port()}", *TINY_FLAGS],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            env=ONE_THREAD)
    seen = []
    try:
        while (msg := sub.recv(200)) is not None or proc.poll() is None:
            if msg is not None and msg[0] in ("status", "heartbeat"):
                seen.append((msg[1]["iteration"], msg[1]["state"]))
        assert proc.wait(timeout=120) == 0
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()
    iterations = [it for it, _ in seen]
    assert iterations and iterations[0] == 4 and iterations[-1] == 8, seen
    assert iterations == sorted(iterations), seen  # never backwards
