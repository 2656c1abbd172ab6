"""A run's identity and whole history: run.json kept across a kill and a resume (a new one after starting
anew), and the `history` command read from the run folder's logs: one unbroken curve from iteration 0
across resumes, spikes that survive thinning, an index that survives damage, the old `limit` argument."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest

import ckpt
import protocol
from protocol.__main__ import main as ctl
from tests.net_support import wait_until
from tests.trainer_support import make_trainer, start_trainer, wait_for
from trainer.config import TelemetryConfig
from trainer.report.history import history
from trainer.report.identity import read_identity
from trainer.report.runlog import RunLog
from trainer.report.telemetry import Telemetry

VAL = {"psnr": 28.0, "ssim": 0.8, "quality": 0.7, "baseline_psnr": 26.0, "baseline_ssim": 0.75,
       "baseline_quality": 0.6, "improvement": 0.1}


def train_records(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in lines if r["kind"] == "train"]


class Curve:
    """A fake run writing metrics.jsonl through RunLog; `live` is what the history must show:
    step -> loss of the records no later record redid."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.log, self.live, self.vals = run_dir, RunLog(run_dir, tensorboard=False), {}, set()
        self.rng = random.Random(0)

    def run(self, start: int, stop: int, every: int = 1, spike: int | None = None) -> None:
        """A process that starts at `start` and writes a record every `every` steps up to `stop`."""
        self.log.metrics("start", start, {})
        self.live = {s: v for s, v in self.live.items() if s <= start}
        self.vals = {s for s in self.vals if s <= start}
        for step in range(start + every, stop + 1, every):
            loss = 50.0 if step == spike else self.rng.random()
            self.log.metrics("train", step, {"loss": loss, "lr": 1e-4, "iter_speed": 2.0, "gpu_memory": 0.0,
                                             "loss_min": loss, "loss_max": loss})
            self.live[step] = loss
            if step % 100 == 0:
                self.log.metrics("val", step, VAL)
                self.vals.add(step)

    def expected(self, points: int, start: int, stop: int) -> list[tuple[int, float, float]]:
        """Brute force: the live records in start..stop in `points` equal buckets of iterations."""
        steps = [s for s in sorted(self.live) if start <= s <= stop]
        buckets: dict[int, list[int]] = {}
        for s in steps:
            buckets.setdefault(s if len(steps) <= points else (s - start) * points // (stop - start + 1), []).append(s)
        return [(b[-1], min(self.live[s] for s in b), max(self.live[s] for s in b)) for b in buckets.values()]


def shown(reply: dict) -> list[tuple[int, float, float]]:
    return [(p["iteration"], p["loss_min"], p["loss_max"]) for p in reply["history"]]


def test_identity_is_kept_across_a_kill_and_resume_and_the_history_is_one_curve(tmp_path):
    run_dir = tmp_path / "run"
    proc, pub, rep = start_trainer(run_dir, "--save-every", "100")
    try:
        with protocol.Subscriber(pub) as sub:
            first = wait_for(sub, lambda t, m: t == "status" and m["iteration"] >= 1)
            beat = wait_for(sub, lambda t, m: t == "heartbeat")
        identity = read_identity(run_dir)
        assert identity is not None and first["run_id"] == identity.id == beat["run_id"]
        assert first["run"] == f"run@{socket.gethostname()}" and beat["run_dir"] == str(run_dir.resolve())
        # kill once a record past the last checkpoint is written: the resumed run redoes those steps
        saved = lambda: max([e["step"] for e in ckpt.list_checkpoints(run_dir)], default=None)  # noqa: E731
        wait = lambda: saved() and any(r["step"] > saved() + 1 for r in train_records(run_dir / "metrics.jsonl"))  # noqa: E731
        wait_until(lambda: proc.poll() is not None or wait(), 120, "a record past the last checkpoint", every=0.05)
        assert proc.poll() is None, proc.stdout.read()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        resumed_from = saved()
        redone = [r["step"] for r in train_records(run_dir / "metrics.jsonl") if r["step"] > resumed_from]
        killed_at = max(r["ts"] for r in train_records(run_dir / "metrics.jsonl"))

        proc, pub, rep = start_trainer(run_dir, "--save-every", "100", "--resume", "latest")
        with protocol.Subscriber(pub) as sub:
            again = wait_for(sub, lambda t, m: t == "status" and m["iteration"] > max(redone))
        assert again["run_id"] == identity.id and again["run"] == first["run"]
        with protocol.CommandClient(rep, timeout_ms=5000) as client:
            reply = wait_until(lambda: (r := client.request("history", {"points": 1000}))["last_iteration"] > max(
                redone) and r, 60, "a record past the redone steps")
            last = client.request("history", {"limit": 3})
        out = io.StringIO()
        with redirect_stdout(out):
            assert ctl(["send", "history", "--rep", rep, "--arg", "points=5", "--timeout", "5"]) == 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert reply["run_id"] == identity.id and reply["run"] == first["run"]
    points = reply["history"]
    iterations = [p["iteration"] for p in points]
    assert iterations[0] <= 5 and iterations == sorted(set(iterations)) and iterations[-1] > max(redone)
    # steps redone after the resume show the resumed run's records, the steps before it the first run's
    assert all(p["timestamp"] > killed_at for p in points if p["iteration"] > resumed_from)
    assert all(p["timestamp"] <= killed_at for p in points if p["iteration"] <= resumed_from)
    assert all(p["loss_min"] <= p["total_loss"] <= p["loss_max"] for p in points)
    assert len(last["history"]) == 3 and [p["iteration"] for p in last["history"]] == sorted(
        p["iteration"] for p in last["history"])
    assert 1 <= len(json.loads(out.getvalue())["history"]) <= 5


def test_starting_anew_makes_a_new_identity_and_fresh_logs(tmp_path):
    make_trainer(tmp_path, **{"train.max_iters": 2, "train.save_every": 2}).run()
    first = read_identity(tmp_path)
    make_trainer(tmp_path, resume="latest", **{"train.max_iters": 3, "train.save_every": 3}).run()
    assert read_identity(tmp_path) == first  # a resume continues the same run
    make_trainer(tmp_path, resume="never", **{"train.max_iters": 2, "train.save_every": 2}).run()
    second = read_identity(tmp_path)
    archived = next(tmp_path.glob("archive-*"))
    assert second is not None and first is not None and second.id != first.id
    assert read_identity(archived) == first
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0] == {**records[0], "kind": "start", "step": 0, "run_id": second.id}
    assert all(r.get("run_id", second.id) == second.id for r in records)  # nothing of the new run went to the archive
    archived_ids = {r["run_id"] for r in map(json.loads, (archived / "metrics.jsonl").read_text().splitlines())
                    if "run_id" in r}
    assert archived_ids == {first.id}


def test_a_one_step_loss_spike_survives_thinning(tmp_path):
    runlog = RunLog(tmp_path, tensorboard=False)
    tel = Telemetry(None, TelemetryConfig(), max_iters=5_000, runlog=runlog)
    for step in range(1, 3001):
        tel.step(step, 9.0 if step == 1234 else 0.5, 1e-4)
        if step % 10 == 0:  # a history point every 10 steps: the spike is between two
            tel.publish_status(force=True)
    reply = history(runlog.history, {"points": 4})
    runlog.close()
    assert [p["iteration"] for p in reply["history"]] == [750, 1500, 2250, 3000]
    assert [p["loss_max"] for p in reply["history"]] == [0.5, 9.0, 0.5, 0.5]
    assert all(p["total_loss"] == p["loss_min"] == 0.5 for p in reply["history"])


def test_history_is_exact_at_every_thinning_and_range(tmp_path):
    curve = Curve(tmp_path)
    curve.run(0, 20_000, every=3, spike=9_000)
    for points in (1, 7, 100, 2000, 5_000):
        for start, stop in ((0, 20_000), (5, 8_000), (9_000, 9_002), (123, 19_999)):
            reply = history(curve.log.history, {"points": points, "from": start, "to": stop})
            assert shown(reply) == curve.expected(points, start, stop), (points, start, stop)
    curve.log.close()


def test_history_across_resumes_is_one_unbroken_curve_where_the_later_records_win(tmp_path):
    curve = Curve(tmp_path)
    curve.run(0, 1_000)
    curve.run(600, 1_500, spike=700)  # killed at 1000 after a checkpoint at 600: 601..1000 redone
    curve.run(1_200, 1_300)  # a rollback or a resume from an older checkpoint, then stopped at 1300
    curve.run(1_300, 2_000)
    reply = history(curve.log.history, {"points": 5_000})
    assert shown(reply) == curve.expected(5_000, 0, 2_000)
    assert [p["iteration"] for p in reply["history"]] == list(range(1, 2_001))
    assert [v["iteration"] for v in reply["validations"]] == list(range(100, 2_001, 100))
    assert reply["validations"][0] == {"iteration": 100, **VAL, "timestamp": reply["validations"][0]["timestamp"]}
    assert reply["last_iteration"] == 2_000 and reply["from"] == 0 and reply["to"] == 2_000
    thinned = history(curve.log.history, {"points": 20})
    assert shown(thinned) == curve.expected(20, 0, 2_000) and max(p[2] for p in shown(thinned)) == 50.0
    curve.log.close()


def test_reads_while_the_run_goes_back_and_forth_always_see_one_increasing_curve(tmp_path):
    curve, done, seen = Curve(tmp_path), threading.Event(), []

    def read() -> None:
        while not done.is_set():
            iterations = [p["iteration"] for p in history(curve.log.history, {"points": 50})["history"]]
            seen.append(iterations == sorted(set(iterations)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for back in range(20):  # each process goes back 150 steps (a rollback or a resume) and on by 300
            curve.run(back * 150, back * 150 + 300)
    finally:
        done.set()
        reader.join()
    assert len(seen) > 5 and all(seen)
    assert shown(history(curve.log.history, {"points": 5_000})) == curve.expected(5_000, 0, 19 * 150 + 300)
    curve.log.close()


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "garbage meta", "deleted", "stale"])
def test_the_index_survives_damage_to_its_files(tmp_path, damage):
    curve = Curve(tmp_path)
    curve.run(0, 5_000)
    curve.run(4_000, 6_000)
    curve.log.close()
    index = tmp_path / "metrics.index"
    if damage == "truncated":
        with open(index / "train.bin", "r+b") as fh:
            fh.truncate(1000)
    elif damage == "corrupt":
        with open(index / "train.bin", "r+b") as fh:
            fh.seek(64_000)
            fh.write(os.urandom(64))
    elif damage == "garbage meta":
        (index / "meta.json").write_text("{not json")
    elif damage == "deleted":
        for path in index.iterdir():
            path.unlink()
        index.rmdir()
    else:  # records written after the index last saw the file (a crash between the two)
        with open(tmp_path / "metrics.jsonl", "a") as fh:
            for step in range(6_001, 6_101):
                fh.write(json.dumps({"ts": 1.0, "kind": "train", "step": step, "loss": 0.25}) + "\n")
                curve.live[step] = 0.25
    reopened = RunLog(tmp_path, tensorboard=False)
    assert reopened.history.rebuilt == (damage != "stale")
    curve.log = reopened
    curve.run(6_100, 6_200)
    reply = history(reopened.history, {"points": 5_000})
    assert shown(reply) == curve.expected(5_000, 0, 6_200)
    assert shown(history(reopened.history, {"points": 33})) == curve.expected(33, 0, 6_200)
    reopened.close()


def test_a_line_torn_by_a_crash_is_skipped_and_the_next_record_is_kept(tmp_path):
    curve = Curve(tmp_path)
    curve.run(0, 50)
    curve.log.close()
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"ts": 1.0, "kind": "train", "st')  # the process died mid-line
    curve.log = RunLog(tmp_path, tensorboard=False)
    curve.run(50, 60)
    assert shown(history(curve.log.history, {})) == curve.expected(2000, 0, 60)
    curve.log.close()


def test_a_failing_index_write_never_stops_the_run_and_the_next_start_catches_up(tmp_path, capsys):
    curve = Curve(tmp_path)
    curve.run(0, 100)
    curve.log.history.train.fh.close()  # the index can no longer write (as on a full disk)
    curve.run(100, 200)  # the records still go to metrics.jsonl
    assert "cannot update metrics.index" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="next start brings it up to date"):
        history(curve.log.history, {})
    curve.log.close()
    curve.log = RunLog(tmp_path, tensorboard=False)
    assert shown(history(curve.log.history, {})) == curve.expected(2000, 0, 200)
    curve.log.close()


def test_the_old_limit_argument_gives_the_last_records_and_bad_arguments_are_refused(tmp_path):
    curve = Curve(tmp_path)
    curve.run(0, 300)
    assert [p["iteration"] for p in history(curve.log.history, {"limit": 4})["history"]] == [297, 298, 299, 300]
    assert len(history(curve.log.history, {"limit": 0})["history"]) == 300  # 0: no limit, as before
    for args, error in (({"points": 0}, "points must be"), ({"from": 9, "to": 3}, "is past to"),
                        ({"limit": -1}, "must not be negative")):
        with pytest.raises(protocol.ProtocolError, match=error):
            history(curve.log.history, args)
    curve.log.close()
