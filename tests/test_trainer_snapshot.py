from __future__ import annotations

import os
import random
import signal
import threading

import numpy as np
import torch

from trainer.train.snapshot import (
    BackgroundWriter,
    capture_rng,
    deferred_signals,
    freeze,
    live_weights,
    restore_rng,
)


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt


def _live(model, opt) -> dict:
    """A checkpoint's large parts, still referencing the live tensors."""
    return {"model_state_dict": live_weights(model), "optimizer_state_dict": opt.state_dict()}


def test_snapshot_is_a_copy_unaffected_by_later_training():
    model, opt = _model_and_optimizer()
    state = freeze(_live(model, opt))
    before = state["model_state_dict"]["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert torch.equal(state["model_state_dict"]["weight"], before)
    exp_avg = state["optimizer_state_dict"]["state"][0]["exp_avg"]
    assert exp_avg.data_ptr() != opt.state_dict()["state"][0]["exp_avg"].data_ptr()


def test_rng_states_round_trip_exactly_and_load_weights_only(tmp_path):
    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.save(state, tmp_path / "rng.pth")
    restore_rng(torch.load(tmp_path / "rng.pth", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_background_writer_never_has_two_writes_in_flight(tmp_path):
    active, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def slow_save(path, state):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        release.wait(5)
        path.write_text(str(state["n"]))
        with lock:
            active[0] -= 1
        return path

    saved = []
    writer = BackgroundWriter(on_saved=lambda p, s: saved.append(p.name), save=slow_save)
    writer.submit(tmp_path / "a", {"n": 1})
    second = threading.Thread(target=writer.submit, args=(tmp_path / "b", {"n": 2}))
    second.start()
    release.set()
    second.join(5)
    writer.wait()
    assert peak[0] == 1 and saved == ["a", "b"]


def test_background_writer_reports_a_failed_write(tmp_path):
    errors = []

    def failing(path, state):
        raise OSError("disk full")

    writer = BackgroundWriter(on_error=lambda p, e: errors.append(str(e)), save=failing)
    writer.submit(tmp_path / "x", {})
    writer.wait()
    assert errors == ["disk full"] and isinstance(writer.last_error, OSError)


def test_signal_during_a_critical_write_is_held_until_the_write_ends():
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: seen.append("handled"))
    try:
        with deferred_signals((signal.SIGUSR1,)):
            os.kill(os.getpid(), signal.SIGUSR1)
            seen.append("write finished")
        assert seen == ["write finished", "handled"]
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_weights_changed_after_wait_copied_do_not_leak_into_the_checkpoint(tmp_path):
    import ckpt
    from trainer.train.snapshot import SnapshotBuffers

    model, opt = _model_and_optimizer()
    expected = model.weight.detach().clone()
    writer, buffers = BackgroundWriter(), SnapshotBuffers()
    state = {"step": 1, **_live(model, opt)}
    writer.submit(tmp_path / ckpt.checkpoint_name(1), state, freeze=lambda s: freeze(s, buffers))
    writer.wait_copied()
    with torch.no_grad():
        model.weight.add_(1.0)  # the optimizer step the loop does next
    writer.wait()
    saved = ckpt.load_checkpoint(tmp_path / ckpt.checkpoint_name(1))
    assert torch.equal(saved["model_state_dict"]["weight"], expected)
