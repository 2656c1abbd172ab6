"""The monitor's SQLite store (monitor/store.py) and what is read into it: history buckets that keep
every spike, the images kept, a full disk, a run folder imported from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from starlette.testclient import TestClient

import monitor.app
from monitor.app import create_app
from monitor.config import MonitorConfig
from monitor.store import BLOCK, KEEP_IMAGES, Store, bucketed
from tests.monitor_support import RUN_ID, feed, frame, nobody

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def points(n: int, every: int = 1, spike_at: int | None = None) -> list[dict]:
    out = [{"iteration": i, "total_loss": 1.0, "learn_rate": 1e-4, "iter_speed": 3.0, "gpu_memory": 1.0,
            "timestamp": 1000.0 + i, "loss_min": 0.5, "loss_max": 1.5} for i in range(0, n, every)]
    for p in out:
        if p["iteration"] == spike_at:
            p["loss_max"] = 99.0
    return out


def test_history_is_the_trainers_rule_each_bucket_its_last_record_and_its_extremes() -> None:
    store = Store()
    records = points(5000, every=7, spike_at=7 * 300)
    store.add_points("r", records)
    store.flush()
    for n, first, last in ((100, 0, 4998), (700, 0, 4998), (1000, 0, 4998), (50, 1000, 2000)):
        got = store.history("r", n, first, last)  # buckets narrower than a block: exactly the trainer's
        assert got["history"] == bucketed(records, n, first, last)
    coarse = store.history("r", 3)["history"]  # wider: edges snap to whole blocks, nothing is lost
    assert len(coarse) <= 3 and coarse[-1] == records[-1] and all(p["iteration"] % 7 == 0 for p in coarse)
    assert max(p["loss_max"] for p in coarse) == 99.0 and min(p["loss_min"] for p in coarse) == 0.5
    store.close()


def test_a_one_step_spike_survives_thinning_200000_steps_to_a_hundred_points() -> None:
    store = Store()
    spike = 177_777
    for start in range(0, 200_000, 50_000):
        store.add_points("r", points(start + 50_000, spike_at=spike)[start:])
    store.flush(120)
    history = store.history("r", 100)["history"]
    assert len(history) <= 100 and history[-1]["iteration"] == 199_999
    assert [p["loss_max"] for p in history].count(99.0) == 1 and min(p["loss_min"] for p in history) == 0.5
    zoomed = store.history("r", 100, spike - 50, spike + 50)["history"]  # finer than a block: every step
    assert {p["iteration"] for p in zoomed if p["loss_max"] == 99.0} == {spike} and BLOCK > 1
    store.close()


def test_the_last_hundred_images_and_every_best_one_are_kept() -> None:
    store = Store()
    for i in range(KEEP_IMAGES + 30):
        store.add_validation("r", {"iteration": i, "quality": 0.5}, PNG, "image/png", best=i in (3, 7))
    store.flush()
    vals = store.history("r")["validations"]
    kept = {v["iteration"] for v in vals if v["image"]}
    assert kept == {3, 7, *range(30, KEEP_IMAGES + 30)} and len(vals) == KEEP_IMAGES + 30
    assert store.image("r", 7)[0] == PNG and store.image("r", 10) is None
    store.close()


def test_a_full_disk_stops_storing_with_one_line_and_reading_goes_on(tmp_path: Path) -> None:
    lines: list[str] = []
    store = Store(tmp_path / "m.sqlite", max_bytes=64 * 1024, log=lines.append)
    store.add_points("r", points(10))
    store.flush()
    for start in range(0, 20_000, 1000):
        store.add_points("r", points(start + 1000)[start:])
        store.flush()
    assert store.error is not None and "full" in store.error
    assert len(lines) == 1 and "storing stopped" in lines[0] and "full" in lines[0]
    assert store.history("r", 5)["history"]  # what was stored is still there
    store.close()


def test_the_dashboard_goes_on_when_the_disk_is_full(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(monitor.app, "Store", lambda path, **kw: Store(path, max_bytes=64 * 1024, **kw))
    config = MonitorConfig(trainers=[nobody()], command_timeout_ms=300, db=str(tmp_path / "m.sqlite"))
    with TestClient(create_app(config), base_url="http://127.0.0.1:5050") as client:
        for i in range(1, 3000):
            feed(client, "status", frame(i, iteration=i, total_loss=0.5, learn_rate=1e-4, timestamp=1.0 * i))
        health = client.get("/healthz").json()
        assert "full" in health["store"]["error"]
        assert client.get("/api/status").json()["iteration"] == 2999  # live frames still shown
        assert client.get("/api/history.json").status_code == 200


def write_run_folder(run_dir: Path) -> list[dict]:
    """A run folder as the trainer leaves it: run.json, metrics.jsonl (with a resume that redid steps
    40..59), validation images, training.log; returns the run's live curve."""
    (run_dir / "validation" / "step_0000040").mkdir(parents=True)
    (run_dir / "validation" / "step_0000040" / "val_00_clip.png").write_bytes(PNG)
    (run_dir / "run.json").write_text(json.dumps({"id": RUN_ID, "name": "copied", "host": "gpu1",
                                                   "created": 500.0}))
    first = [{"ts": 1000.0 + s, "kind": "train", "step": s, "loss": 1.0, "lr": 1e-4, "iter_speed": 3.0,
              "gpu_memory": 1.0, "loss_min": 0.9, "loss_max": 1.1} for s in range(0, 60, 10)]
    resumed = [{**r, "ts": r["ts"] + 100, "loss": 0.5} for r in first[4:]] + [
        {**first[0], "step": s, "ts": 1200.0 + s, "loss": 0.4} for s in (60, 70)]
    val = {"ts": 1041.0, "kind": "val", "step": 40, "psnr": 30.0, "ssim": 0.9, "quality": 0.8,
           "baseline_psnr": 28.0, "baseline_ssim": 0.85, "baseline_quality": 0.7, "improvement": 0.1}
    lines = [*first, val, {"ts": 1100.0, "kind": "start", "step": 40}, *resumed]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"cut by a cra')
    (run_dir / "training.log").write_text("2026-12-01 10:00:00  finished             done\n")
    return [*first[:4], *resumed]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120)


def test_a_run_folder_imported_from_the_command_line_is_listed_and_served(tmp_path: Path) -> None:
    db, run_dir = tmp_path / "m.sqlite", tmp_path / "copied"
    curve = write_run_folder(run_dir)
    done = run_cli("import", str(run_dir), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "copied@gpu1" in done.stdout and "70 iterations" in done.stdout
    listed = run_cli("runs", "list", "--db", str(db))
    assert listed.returncode == 0 and RUN_ID[:12] in listed.stdout and "finished" in listed.stdout
    config = MonitorConfig(trainers=[nobody()], command_timeout_ms=300, db=str(db))
    with TestClient(create_app(config), base_url="http://127.0.0.1:5050") as client:
        run = client.get("/api/runs").json()["runs"][0]
        assert (run["id"], run["name"], run["state"], run["iteration"]) == (RUN_ID, "copied@gpu1", "finished", 70)
        assert run["started"] == 500.0 and run["ended"] == 1270.0 and run["best_score"] == 0.8
        history = client.get(f"/api/history.json?run={RUN_ID}").json()
        assert [(p["iteration"], p["total_loss"]) for p in history["history"]] == \
            [(r["step"], r["loss"]) for r in curve]  # the resumed stretch replaces the redone steps
        assert history["validations"][0]["image"] is True
        assert client.get(f"/api/validation.png?run={RUN_ID}&iteration=40").content == PNG
        assert client.get("/api/validation?run=copied@gpu1&iteration=40").json()["psnr"] == 30.0
    deleted = run_cli("runs", "delete", RUN_ID[:8], "--db", str(db))
    assert deleted.returncode == 0 and "copied@gpu1" in deleted.stdout
    assert "no runs stored" in run_cli("runs", "list", "--db", str(db)).stdout


def test_a_run_whose_monitor_was_killed_mid_training_is_lost_on_the_command_line_as_in_the_api(
        tmp_path: Path) -> None:
    """Its row still says `training` (nobody wrote its end); `runs list` and GET /api/runs both show it
    lost, ended when last seen, through one decision (recorder.shown_state); a row seen just now (a run
    a monitor beside it is recording) still shows `training` on the command line."""
    db, now = tmp_path / "m.sqlite", time.time()
    store = Store(str(db))
    store.upsert_run({"id": RUN_ID, "name": "killed@gpu1", "host": "gpu1", "state": "training", "iteration": 50,
                      "started": now - 7200, "last_seen": now - 3600})
    store.upsert_run({"id": "f" * 32, "name": "going@gpu1", "host": "gpu1", "state": "training", "iteration": 9,
                      "started": now - 60, "last_seen": now})
    store.upsert_run({"id": "e" * 32, "name": "heartbeat-only@gpu1", "state": "loading", "started": now - 30,
                      "last_seen": now - 20})  # no status yet: no iteration in its row
    store.flush()
    store.close()
    listed = run_cli("runs", "list", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["killed@gpu1"][2] == "lost" and rows["killed@gpu1"][-2:] == \
        time.strftime("%Y-%m-%d %H:%M", time.localtime(now - 3600)).split()
    assert rows["going@gpu1"][2] == "training" and rows["going@gpu1"][-1] == "-"
    assert rows["heartbeat-only@gpu1"][2:4] == ["loading", "0"]
    config = MonitorConfig(trainers=[nobody()], command_timeout_ms=300, db=str(db))
    with TestClient(create_app(config), base_url="http://127.0.0.1:5050") as client:
        run = next(r for r in client.get("/api/runs").json()["runs"] if r["id"] == RUN_ID)
    assert (run["state"], run["live"], run["ended"]) == ("lost", False, now - 3600)


def test_bad_input_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    for args in (("import", str(tmp_path / "missing"), "--db", str(db)), ("runs", "delete", "nope", "--db", str(db))):
        done = run_cli(*args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_validation_above_the_trainers_best_score_keeps_its_image_for_good() -> None:
    config = MonitorConfig(trainers=[nobody()], command_timeout_ms=300)
    with TestClient(create_app(config), base_url="http://127.0.0.1:5050") as client:
        feed(client, "status", frame(1, iteration=1, total_loss=0.5, learn_rate=1e-4, best_score=0.9))
        for i in range(KEEP_IMAGES + 20):  # step 10 beats the best score the status says (0.9); the rest do not
            feed(client, "validation", frame(2 + i, iteration=100 + i, psnr=30.0, ssim=0.9,
                                             quality=0.95 if i == 10 else 0.5, baseline_psnr=28.0,
                                             baseline_ssim=0.8, baseline_quality=0.6, image=PNG))
        kept = {v["iteration"] for v in client.get("/api/history.json").json()["validations"] if v["image"]}
    assert kept == {110, *range(120, KEEP_IMAGES + 120)}
