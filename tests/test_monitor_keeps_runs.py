"""The monitor keeps every run (issue 18): real monitor processes on a SQLite file, mock trainers over
real ZeroMQ sockets. SIGKILL loses nothing, a late monitor shows the run from iteration 0, a resumed run
is one curve, a second monitor on the file is refused, a damaged file is moved aside."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ckpt
from monitor.mock import MockTrainer
from protocol import CommandClient, EndpointError
from tests.faults.procs import TINY, MonitorProc, TrainerProc
from tests.monitor_support import RUN_ID, fetch_history, monitor_on, stored_runs
from tests.net_support import free_endpoint, wait_until


def mock(**kw: object) -> MockTrainer:
    return MockTrainer("default@box", status_hz=20, speed=40, run_id=RUN_ID, **kw).start()


def pause(trainer: MockTrainer) -> int:
    """Pause the mock; its last record's iteration (no record comes after it while paused)."""
    with CommandClient(trainer.rep_endpoint) as ctl:
        assert ctl.request("pause")["ok"]
    wait_until(lambda: trainer.paused, what="paused")
    return trainer.records()[-1]["iteration"]


def test_sigkill_and_restart_lose_nothing_and_the_history_equals_the_trainers(tmp_path: Path) -> None:
    db = tmp_path / "monitor.sqlite"
    trainer = mock(validate_every=40, validate_s=0.1)
    first = monitor_on(trainer, db)
    try:
        wait_until(lambda: len(fetch_history(first)["history"]) >= 3, 30, "points on the first monitor")
        first.kill()  # SIGKILL, mid-stream
        for moment in (0.0, 0.3):  # and again while a new one opens the file and fetches the record
            caught = monitor_on(trainer, db)
            time.sleep(moment)
            caught.kill()
        end = pause(trainer)
        second = monitor_on(trainer, db)
        try:
            assert RUN_ID in stored_runs(second)  # there before the trainer is asked anything
            want = trainer._history_reply({"points": 10_000, "to": end})
            wait_until(lambda: fetch_history(second, points=10_000, to=end)["history"] == want["history"], 30,
                       "the restarted monitor's history to equal the trainer's")
            got = fetch_history(second, points=10_000, to=end)
            assert [v["iteration"] for v in got["validations"]] == [v["iteration"] for v in want["validations"]]
            assert got["history"][0]["iteration"] == trainer.records()[0]["iteration"]
        finally:
            second.kill()
    finally:
        first.kill()
        trainer.stop()


def test_a_monitor_started_late_shows_the_run_from_iteration_0(tmp_path: Path) -> None:
    trainer = mock()
    try:
        wait_until(lambda: trainer.iteration > 120, 30, "the mock to train a while")
        late = monitor_on(trainer, tmp_path / "m.sqlite")
        try:
            first = trainer.records()[0]["iteration"]
            body = wait_until(lambda: (h := fetch_history(late))["history"] and h["history"][0]["iteration"] == first
                              and h, 30, "the late monitor's history from the run's first point")
            assert body["run_id"] == RUN_ID and body["run"] == "default@box"
        finally:
            late.kill()
    finally:
        trainer.stop()


def resumed(pub: str, rep: str, step: int, records: list[dict]) -> MockTrainer | None:
    """The run's next process, resumed at `step` on the same endpoints (None while they are still bound)."""
    try:
        return MockTrainer("default@box", pub=pub, rep=rep, status_hz=20, speed=40, run_id=RUN_ID,
                           start_iteration=step, history=records).start()
    except EndpointError:
        return None


def test_a_run_killed_and_resumed_is_one_unbroken_curve(tmp_path: Path) -> None:
    pub, rep = free_endpoint(), free_endpoint()
    before = MockTrainer("default@box", pub=pub, rep=rep, status_hz=20, speed=40, run_id=RUN_ID).start()
    monitor = MonitorProc(pub, rep, extra=["--db", str(tmp_path / "m.sqlite")]).start()
    try:
        wait_until(lambda: len(fetch_history(monitor)["history"]) >= 4, 30, "points before the crash")
        records = before.records()
        before.stop()  # killed: the resumed process goes on from an earlier checkpoint
        resume_at = records[len(records) // 2]["iteration"]
        after = wait_until(lambda: resumed(pub, rep, resume_at, records), 30, "the ports free again")
        try:
            wait_until(lambda: len(after.records()) > len(records) // 2 + 4, 30, "records after the resume")
            end = pause(after)
            want = after._history_reply({"points": 10_000, "to": end})["history"]
            wait_until(lambda: fetch_history(monitor, points=10_000, to=10**9)["history"][:len(want)] == want, 30,
                       "the monitor's curve to be the resumed run's")
            its = [p["iteration"] for p in fetch_history(monitor, points=10_000)["history"]]
            assert its == sorted(set(its)) and its[0] == records[0]["iteration"]  # one curve, from the start
            runs = [r for r in monitor.get("/api/runs")["runs"] if r["id"] == RUN_ID]
            assert len(runs) == 1  # one run across the resume
        finally:
            after.stop()
    finally:
        monitor.kill()


def test_a_finished_run_stays_listed_after_a_restart_with_its_whole_history(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    trainer = mock()
    first = monitor_on(trainer, db)
    try:
        wait_until(lambda: len(fetch_history(first)["history"]) >= 3 and stored_runs(first)[RUN_ID]["duration"] > 1,
                   30, "points over a second")
        with CommandClient(trainer.rep_endpoint) as ctl:
            assert ctl.request("stop")["ok"]  # the mock says `stopping` and goes quiet
        wait_until(trainer.stopped.is_set, what="the mock stopping")
        wait_until(lambda: any(e["kind"] == "stopping" for e in first.get("/api/events")["events"]), what="stopping")
        trainer.stop()
        wait_until(lambda: (r := stored_runs(first).get(RUN_ID)) and r["state"] == "stopped", 30, "stopped")
        kept = fetch_history(first)["history"]
    finally:
        first.kill()
        trainer.stop()
    again = MonitorProc(free_endpoint(), free_endpoint(), extra=["--db", str(db)]).start()  # no trainer at all
    try:
        run = wait_until(lambda: stored_runs(again).get(RUN_ID), 30, "the run listed again")
        assert run["state"] == "stopped" and not run["live"] and run["ended"] >= run["started"]
        assert run["duration"] > 0 and run["name"] == "default@box" and run["host"] == "box"
        assert fetch_history(again)["history"] == kept
    finally:
        again.kill()


def test_a_second_monitor_on_the_same_file_is_refused_at_once_naming_the_first(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    first = MonitorProc(free_endpoint(), free_endpoint(), extra=["--db", str(db)]).start()
    try:
        wait_until(lambda: first.get("/healthz"), 30, "the first monitor serving")
        second = subprocess.run([sys.executable, "-m", "monitor", "--db", str(db), "--port", "0"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        line = second.stderr.strip()
        assert len(line.splitlines()) == 1 and f"pid {first.proc.pid}" in line and str(first.port) in line
    finally:
        first.kill()


def test_a_damaged_database_is_moved_aside_named_and_a_new_one_started(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 4096)  # a header, then garbage
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "--db", str(db), "--port", "0",
                             "--pub", free_endpoint(), "--rep", free_endpoint()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(list(tmp_path.glob("m.sqlite.damaged-*"))) == 1, 30, "the file moved aside")
        wait_until(lambda: db.exists() and db.stat().st_size > 0, 30, "a new database")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    aside = next(tmp_path.glob("m.sqlite.damaged-*"))
    assert aside.read_bytes().startswith(b"SQLite format 3\x00\xde\xad")  # kept as it was
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert len(lines) == 1 and str(db) in lines[0] and str(aside) in lines[0]


def train_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines[:-1]) if r.get("kind") == "train"]  # the last may be cut


@pytest.mark.slow
def test_a_real_run_killed_and_resumed_is_one_curve_in_the_monitor_equal_to_the_trainers(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY, "--max-iters", "1000000", "--val-every", "50", "--save-every", "100", "--resume", "latest"]
    trainer = TrainerProc(run_dir, args).start()
    monitor = MonitorProc(trainer.pub, trainer.rep, extra=["--db", str(tmp_path / "m.sqlite")]).start()
    try:
        saved = lambda: max([e["step"] for e in ckpt.list_checkpoints(run_dir)], default=None)  # noqa: E731
        wait_until(lambda: saved() and any(s > saved() + 1 for s in train_steps(run_dir)), 180,
                   "a record past the last checkpoint", every=0.05)
        trainer.signal(signal.SIGKILL)
        trainer.wait(10)
        redone = max(train_steps(run_dir))
        trainer = TrainerProc(run_dir, args, pub=trainer.pub, rep=trainer.rep).start()
        with CommandClient(trainer.rep, timeout_ms=5000) as client:
            wait_until(lambda: client.request("history", {"points": 1})["last_iteration"] > redone + 20, 180,
                       "records past the redone steps", every=0.2)
            assert client.request("pause")["ok"]
            time.sleep(2)  # paused: no more records
            want = client.request("history", {"points": 5000})
            wait_until(lambda: fetch_history(monitor, points=5000, to=want["to"])["history"] == want["history"],
                       60, "the monitor's copy to equal the trainer's history", every=0.5)
        got = fetch_history(monitor, points=5000, to=want["to"])
        its = [p["iteration"] for p in got["history"]]
        assert its == sorted(set(its)) and its[0] <= 5 and its[-1] > redone  # one curve from the start
        assert [v["iteration"] for v in got["validations"]] == [v["iteration"] for v in want["validations"]]
        assert [r["id"] for r in monitor.get("/api/runs")["runs"]] == [want["run_id"]]  # one run across the resume
    finally:
        trainer.kill()
        monitor.kill()
