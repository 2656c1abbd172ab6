"""The trainer's `history` over a long run's metrics.jsonl. `python -m bench trainer_history`.

Goals (issue 18): a request for 2000 points over a 1,000,000-line metrics.jsonl in at most 300 ms,
with memory that does not grow with the run (100k vs 1M lines side by side: a whole-run reply carries
every validation, 10x more in the longer run; the same iteration window carries as many); the cold index build
(no index yet, or a damaged one) and the reopen of an intact one; the cost of one record to the
training loop. Each run resumes once from an earlier step, so the index holds a redone stretch.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from protocol import encode_reply
from protocol.schemas import HISTORY_MAX_POINTS
from trainer.report.history import history
from trainer.report.history_index import HistoryIndex
from trainer.report.runlog import RunLog

SIZES = (100_000, 1_000_000)
REQUESTS = 20
VAL_EVERY = 500  # lines
WINDOW = 1_000_000  # iterations: a range with as many validations in both runs (the whole run has 10x more)


def write_metrics(path: Path, lines: int) -> None:
    """`lines` records as the trainer writes them: ~30 steps each, a validation every VAL_EVERY lines,
    and a resume at 60% from a step 1% of the run earlier (so the index cuts back once)."""
    resume_at, step, ts = int(lines * 0.6), 0, 1.8e9
    with open(path, "w") as fh:
        fh.write(json.dumps({"ts": ts, "kind": "start", "step": 0}) + "\n")
        for n in range(1, lines):
            if n == resume_at:
                step -= lines // 100 * 30
                fh.write(json.dumps({"ts": ts, "kind": "start", "step": step}) + "\n")
                continue
            if n % VAL_EVERY == 0:
                fh.write(f'{{"ts": {ts:.3f}, "kind": "val", "step": {step}, "psnr": 28.1, "ssim": 0.81, '
                         f'"quality": 0.7, "baseline_psnr": 26.0, "baseline_ssim": 0.75, "baseline_quality": 0.6, '
                         f'"improvement": 0.1}}\n')
                continue
            step, ts = step + 30, ts + 1.0
            loss = 0.02 + 0.3 / (1 + step / 5e4) + (n % 7) * 1e-3
            fh.write(f'{{"ts": {ts:.3f}, "kind": "train", "step": {step}, "loss": {loss:.6f}, "lr": 0.0001, '
                     f'"iter_speed": 30.0, "gpu_memory": 7.8, "loss_min": {loss * 0.9:.6f}, '
                     f'"loss_max": {loss * 1.1:.6f}, "epoch": 3, "grad_norm": 0.7, "losses_l1": {loss:.6f}}}\n')


def request_times(index: HistoryIndex, args_list: list[dict], cpu: list[float] | None = None) -> list[float]:
    """Wall ms per request (and CPU ms into `cpu`: on a shared box the wall time waits for the cores)."""
    times = []
    for args in args_list:
        start, cpu_start = time.perf_counter(), time.process_time()
        reply = history(index, args)
        times.append((time.perf_counter() - start) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - cpu_start) * 1000)
        assert reply["history"], args
    return times


def traced_peak(index: HistoryIndex, args: dict) -> float:
    """Bytes allocated at the peak of one request (the reply included)."""
    tracemalloc.start()
    history(index, args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def measure(folder: Path, lines: int) -> dict[str, float]:
    path = folder / "metrics.jsonl"
    write_metrics(path, lines)
    start, cpu = time.perf_counter(), time.process_time()
    index = HistoryIndex(path)
    cold, cold_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert index.rebuilt
    index.close()
    start = time.perf_counter()
    index = HistoryIndex(path)
    warm = time.perf_counter() - start
    os.sync()  # a long run's files are long on disk: time the requests without this run's writeback beside them
    last = history(index, {"points": 1})["last_iteration"]
    whole_cpu: list[float] = []
    whole = request_times(index, [{"points": 2000}] * REQUESTS, whole_cpu)
    pages = request_times(index, [{"points": 2000, "from": a, "to": a + last // 10}
                                  for a in range(0, last, last // 10)][:REQUESTS])
    limit = request_times(index, [{"limit": 2000}] * 5)
    frame = len(encode_reply(True, **history(index, {"points": HISTORY_MAX_POINTS}))) / 2**20
    window = request_times(index, [{"points": 2000, "from": last - WINDOW, "to": last}] * REQUESTS)
    gc.collect()
    rss_before = rss_mb()
    peak = traced_peak(index, {"points": 2000})
    window_peak = traced_peak(index, {"points": 2000, "from": last - WINDOW, "to": last})
    rss_growth = rss_mb() - rss_before
    index.close()
    runlog = RunLog(folder, tensorboard=False)  # reopens the intact index, then appends as training does
    start, n = time.perf_counter(), 2000
    for i in range(n):
        runlog.metrics("train", last + 30 * (i + 1), {"loss": 0.1, "lr": 1e-4, "iter_speed": 30.0,
                                                      "gpu_memory": 7.8, "loss_min": 0.09, "loss_max": 0.11})
    record_us = (time.perf_counter() - start) / n * 1e6
    runlog.close()
    return {"cold build s": cold, "  its CPU s": cold_cpu, "reopen s": warm,
            "2000 pts median ms": statistics.median(whole),
            "2000 pts p90 ms": statistics.quantiles(whole, n=10)[-1], "2000 pts max ms": max(whole),
            "2000 pts CPU median ms": statistics.median(whole_cpu), "  same, last 1M its ms": statistics.median(window),
            "page 1/10 median ms": statistics.median(pages),
            "limit=2000 median ms": statistics.median(limit), "5000 pts reply MiB": frame,
            "tracemalloc peak KiB": peak / 1024,
            "  same, last 1M its KiB": window_peak / 1024,
            "RSS growth MiB": rss_growth, "record+index us": record_us,
            "metrics.jsonl MiB": path.stat().st_size / 2**20,
            "index MiB": sum(p.stat().st_size for p in (folder / "metrics.index").iterdir()) / 2**20}


def main() -> None:
    results = {}
    for lines in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            results[lines] = measure(Path(tmp), lines)
    print(f"{'':24}" + "".join(f"{f'{n:,} lines':>16}" for n in SIZES))
    for key in results[SIZES[0]]:
        print(f"{key:24}" + "".join(f"{results[n][key]:16.2f}" for n in SIZES))
    for key in ("2000 pts median ms", "2000 pts p90 ms", "2000 pts max ms", "2000 pts CPU median ms"):
        worst = max(results[n][key] for n in SIZES)
        print(f"goal: 2000 points in <= 300 ms, {key.removeprefix('2000 pts ')}: "
              f"{'met' if worst <= 300 else 'MISSED'} (worst {worst:.1f} ms)")


if __name__ == "__main__":
    main()
