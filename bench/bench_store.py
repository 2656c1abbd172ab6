"""The monitor's SQLite store (issue 18): reading a long run, what storing costs, the size of a point.

Goals: GET /api/history.json?points=2000 on a stored run of 1,000,000 steps (a point every step) at most
300 ms, through a real monitor process; storing at most 5% of the monitor's CPU at 10 trainers x 10
frames/s (two monitor processes side by side on the same frames, one with the store's frame writing
switched off); the database's bytes per history point.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import psutil

from bench.bench_monitor import free_port, monitor_process, status_fields
from monitor.store import Store
from protocol import Publisher

STEPS = 1_000_000
RUN = "0123456789abcdef0123456789abcdef"
TRAINERS, HZ, LOAD_S, ROUNDS = 10, 10.0, 30.0, 3
# the same monitor with the live frames not stored (the store still opens and answers reads)
NO_STORING = ("import sys, monitor.recorder as r; r.Recorder.frame = lambda *a: None; "
              "from monitor.__main__ import main; sys.exit(main(sys.argv[1:]))")


def fill(path: Path) -> float:
    """A run of STEPS points, one per step, written as the monitor writes them; seconds taken."""
    store = Store(path)
    store.upsert_run({"id": RUN, "name": "bench@host", "state": "finished", "started": 0.0})
    start = time.perf_counter()
    for first in range(0, STEPS, 50_000):
        store.add_points(RUN, ({"iteration": i, "total_loss": 0.1 + 1e-7 * (i % 977), "learn_rate": 1e-4,
                                "iter_speed": 30.0, "gpu_memory": 7.5, "timestamp": 1e9 + i,
                                "loss_min": 0.09, "loss_max": 0.2} for i in range(first, first + 50_000)))
    store.flush(timeout=600)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def read_times(path: Path, requests: int = 20) -> list[float]:
    """Seconds per GET /api/history.json?points=2000 from a monitor process serving the file."""
    with monitor_process(f"tcp://127.0.0.1:{free_port()}", "--db", str(path)) as base:
        url = f"{base}/api/history.json?run={RUN}&points=2000"
        with httpx.Client(timeout=60) as client:  # one connection, as a browser keeps it
            assert len(client.get(url).json()["history"]) == 2000  # warm: pages in the page cache
            times = []
            for _ in range(requests):
                start = time.perf_counter()
                client.get(url).raise_for_status()
                times.append(time.perf_counter() - start)
    return times


def monitor_cmd(pubs: list[str], db: str, storing: bool) -> list[str]:
    flags = [arg for pub in pubs for arg in ("--pub", pub, "--rep", f"tcp://127.0.0.1:{free_port()}")]
    flags += ["--db", db, "--port", str(free_port())]
    return [sys.executable, "-m", "monitor", *flags] if storing else [sys.executable, "-c", NO_STORING, *flags]


def cpu_side_by_side(folder: Path) -> tuple[float, float, int]:
    """CPU seconds of a storing and a non-storing monitor over the same LOAD_S of frames; points stored."""
    pubs = [f"tcp://127.0.0.1:{free_port()}" for _ in range(TRAINERS)]
    publishers = [Publisher(p, f"trainer{k}@host", run_id=f"{k:032x}") for k, p in enumerate(pubs)]
    db = folder / "load.sqlite"
    procs = [subprocess.Popen(monitor_cmd(pubs, str(db), True), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen(monitor_cmd(pubs, ":memory:", False), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        time.sleep(5)  # both started and subscribed
        usage = [psutil.Process(p.pid) for p in procs]
        before = [sum(u.cpu_times()[:2]) for u in usage]
        tick, i, start = 1.0 / HZ, 0, time.monotonic()
        while time.monotonic() - start < LOAD_S:
            i += 1
            for pub in publishers:
                pub.publish("status", **status_fields(i), state="training")
            time.sleep(max(0.0, start + i * tick - time.monotonic()))
        time.sleep(1.0)  # the last batch written
        after = [sum(u.cpu_times()[:2]) for u in usage]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
        for pub in publishers:
            pub.close()
    reader = Store(db, readonly=True)
    points = reader.counts()["points"]
    reader.close()
    db.unlink()
    return after[0] - before[0], after[1] - before[1], points


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "long.sqlite"
        took = fill(path)
        size = sum(os.path.getsize(p) for p in folder.glob("long.sqlite*"))
        print(f"store: {STEPS:,} points written in {took:.1f} s ({STEPS / took:,.0f} points/s); "
              f"{size / STEPS:.1f} bytes per history point ({size / 2**20:.0f} MiB, index and block summaries in)")
        times = read_times(path)
        median = statistics.median(times) * 1e3
        print(f"GET /api/history.json?points=2000 on {STEPS:,} stored steps: median {median:.0f} ms, "
              f"max {max(times) * 1e3:.0f} ms over {len(times)} requests (goal <= 300 ms)")
        shares = []
        for _ in range(ROUNDS):
            storing, plain, points = cpu_side_by_side(folder)
            shares.append((storing - plain) / storing if storing else 0.0)
            print(f"{TRAINERS} trainers x {HZ:.0f} frames/s for {LOAD_S:.0f} s: monitor CPU {storing / LOAD_S:.1%} "
                  f"storing ({points:,} points kept) vs {plain / LOAD_S:.1%} not; storing's share {shares[-1]:.1%}")
        print(f"storing's share of the monitor's CPU: median {statistics.median(shares):.1%} of {ROUNDS} rounds "
              "(goal <= 5%; two processes side by side on a shared box: a round's figure moves by a few points)")


if __name__ == "__main__":
    main()
