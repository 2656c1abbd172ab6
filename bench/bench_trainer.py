"""Trainer figures: telemetry overhead, command latency under long steps, checkpoint stall,
the DDP replica guard's cost.

Run with `python -m bench trainer`. Prints measurements side by side with their goals.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ckpt
import protocol
from trainer import models
from trainer.config import Config, TelemetryConfig, TrainConfig
from trainer.report.telemetry import Telemetry
from trainer.train.batches import BatchStream
from trainer.train.checkpoint import state_tensors, training_parts
from trainer.train.distributed import DistInfo
from trainer.train.replicas import ReplicaGuard
from trainer.train.snapshot import BackgroundWriter, SnapshotBuffers, freeze, live_weights
from trainer.train.state import TrainingState


class _Step:
    """A small real training step (VSR++ forward/backward/AdamW), built once."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = models.build("vsrpp", num_frames=5, n_feats=16, n_blocks=2, scale=3)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.x = torch.rand(2, 5, 3, 24, 24)
        self.it = 0

    def rate(self, telemetry: Telemetry, seconds: float) -> float:
        """Steps per CPU-second of this process (all its threads, the telemetry thread too):
        other processes on a busy machine barely move it, unlike wall-clock rates."""
        n, start, cpu0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            loss = self.model(self.x).mean()
            loss.backward()
            self.opt.step()
            self.opt.zero_grad()
            n += 1
            self.it += 1
            telemetry.step(self.it, loss.detach(), 1e-4)
        return n / (time.process_time() - cpu0)


def _cost_us(call, n: int = 2000) -> float:
    """Median microseconds per call over 5 batches of n."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def _reader(sub: protocol.Subscriber, stop: threading.Event) -> None:
    while not stop.is_set():
        sub.recv(50)


def telemetry_overhead(rounds: int = 20, seconds: float = 0.5) -> None:
    cfg = TelemetryConfig(status_hz=10.0, heartbeat_s=0.5)
    pub = protocol.Publisher("tcp://127.0.0.1:*", "bench")
    reading, idle = protocol.Subscriber(pub.endpoint), protocol.Subscriber(pub.endpoint)
    stop = threading.Event()
    threading.Thread(target=_reader, args=(reading, stop), daemon=True).start()
    off = Telemetry(None, cfg, max_iters=10**9)
    on = Telemetry(pub, cfg, max_iters=10**9)
    on.start()
    proc = psutil.Process()
    step, ratios = _Step(), []
    step.rate(on, seconds)  # warm-up: allocator, thread pools, socket queues
    rss0 = proc.memory_info().rss
    for i in range(rounds):  # interleaved A/B (order alternating) so machine noise hits both
        first, second = (on, off) if i % 2 else (off, on)
        a, b = step.rate(first, seconds), step.rate(second, seconds)
        ratios.append(a / b if first is on else b / a)
    ratios.sort()
    rss1 = proc.memory_info().rss
    stop.set()
    on.close()
    print(f"steps per CPU-second, telemetry + live subscriber (+ one that never reads) / telemetry off: "
          f"median {statistics.median(ratios):.3f} over {rounds} A/B rounds "
          f"(quartiles {ratios[rounds // 4]:.3f}..{ratios[3 * rounds // 4]:.3f})   goal >= 0.99")
    print(f"trainer RSS change over {rounds * 2 * seconds:.0f} s (after warm-up) with a never-reading subscriber: "
          f"{(rss1 - rss0) / 1e6:+.1f} MB   goal: bounded (PUB high-water mark {1000} frames)")
    print(f"frames published {pub.sent}, dropped at the socket {pub.dropped}")
    loop_us = _cost_us(lambda: on.publish_status())
    status = on.latest_status()
    send_us = _cost_us(lambda: pub.publish("status", **status))
    per_s = 10 * (loop_us + send_us) + 2 * send_us  # 10 status frames and 2 heartbeats a second
    print(f"cost of telemetry: a status frame {loop_us:.0f} us on the loop + {send_us:.0f} us to encode and send;"
          f" {per_s:.0f} us of CPU per second = a step rate of {1 - per_s / 1e6:.4f}x   goal >= 0.99")
    for s in (reading, idle):
        s.close()
    pub.close()


def command_latency(n: int = 60, step_s: float = 2.0) -> None:
    server = protocol.CommandServer("tcp://127.0.0.1:*", queries={"status": lambda a: {"status": {}}})
    server.start()
    stop = threading.Event()

    def busy_loop() -> None:  # a training step of about step_s seconds of torch work
        a = torch.rand(512, 512)
        while not stop.is_set():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < step_s:
                a = (a @ a).clamp_(0, 1)
            server.drain()

    threading.Thread(target=busy_loop, daemon=True).start()
    client = protocol.CommandClient(server.endpoint, timeout_ms=2000)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        client.request("pause" if i % 2 else "status")
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    stop.set()
    client.close()
    server.close()
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"command ack latency while a step takes {step_s:.0f} s: p50 {statistics.median(times):.1f} ms,"
          f" p99 {p99:.1f} ms, max {times[-1]:.1f} ms   goal p99 < 100 ms")


def checkpoint_stall(reps: int = 3) -> None:
    torch.manual_seed(0)
    model = models.build("vsrpp", num_frames=5, n_feats=128, n_blocks=32, scale=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(1, 5, 3, 8, 8)
    model(x).mean().backward()
    opt.step()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        writer, buffers = BackgroundWriter(), SnapshotBuffers()
        blocked, copy_only, fwd_bwd, sync = [], [], [], []
        for i in range(reps + 1):  # round 0 allocates the reused buffers
            writer.wait()  # as the loop does before a snapshot
            t0 = time.perf_counter()
            state = {"step": i, "model_state_dict": live_weights(model), "optimizer_state_dict": opt.state_dict()}
            writer.submit(Path(tmp) / ckpt.checkpoint_name(i), state, freeze=lambda s: freeze(s, buffers))
            t_call = time.perf_counter() - t0
            t1 = time.perf_counter()  # the next iteration's forward/backward only reads the weights
            model(x).mean().backward()
            t2 = time.perf_counter()
            writer.wait_copied()  # before the optimizer step
            blocked.append(t_call + time.perf_counter() - t2)
            fwd_bwd.append(t2 - t1)
            opt.step()
            writer.wait()
            t0 = time.perf_counter()
            freeze({"model_state_dict": live_weights(model), "optimizer_state_dict": opt.state_dict()}, buffers)
            copy_only.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            live = {"step": i, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict()}
            ckpt.save_checkpoint(Path(tmp) / ckpt.checkpoint_name(100 + i), live)
            sync.append(time.perf_counter() - t0)
    b, c, s = (statistics.median(v[1:]) for v in (blocked, copy_only, sync))
    print(f"loop blocked per checkpoint of a {params:.1f} M-parameter model (+AdamW state): "
          f"{b * 1000:.0f} ms (copy overlapped with a {statistics.median(fwd_bwd) * 1000:.0f} ms "
          f"forward/backward) vs synchronous save+fsync {s * 1000:.0f} ms = {b / s:.3f}x   goal <= 0.2x")
    print(f"  without the overlap (whole snapshot copy on the loop): {c * 1000:.0f} ms = {c / s:.3f}x")


def _guard_rank(rank: int, init_file: str, steps: int, checks: int, results: Any) -> None:
    """One of 2 gloo ranks training the default run's model under DDP: step time with the guard
    off, then the time of one replica check (digest, all-gather, compare)."""
    torch.set_num_threads(1)
    info = DistInfo(rank=rank, world_size=2)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    cfg = Config()  # the default run: VSR++ 32 features x 4 blocks, batch 16 of 16 px crops, AdamW
    state = TrainingState(cfg, torch.device("cpu"), BatchStream(list(range(16)), cfg, info), decides=rank == 0)
    state.wrap(info)
    guard = ReplicaGuard(state, info, every=0)
    x = torch.rand(cfg.train.batch_size, 5, 3, 16, 16)
    y = torch.rand(cfg.train.batch_size, 3, 48, 48)

    def step() -> None:
        loss, _ = state.loss_fn(state.model(x), y)
        loss.backward()
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)

    step()  # AdamW state exists from here on: the check covers it too
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    step_s = (time.perf_counter() - t0) / steps
    times = []
    for i in range(checks):
        t0 = time.perf_counter()
        guard.check(i)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        results.put((step_s, statistics.median(times), len(state_tensors(training_parts(state))), guard.fingerprint()))
    dist.destroy_process_group()


def replica_guard(steps: int = 10, checks: int = 30) -> None:
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_guard_rank, args=(str(Path(tmp) / "init"), steps, checks, results), nprocs=2,
                           start_method="spawn")
    step_s, check_s, tensors, _ = results.get()
    every = TrainConfig().replica_check_every
    print(f"replica guard, 2 CPU ranks (gloo, 1 thread each), default model + AdamW ({tensors} tensors): "
          f"one check {check_s * 1000:.1f} ms; a DDP training step (guard off) {step_s * 1000:.0f} ms; "
          f"at the default interval ({every} steps) {check_s / every * 1000:.3f} ms per step = "
          f"{check_s / every / step_s:.2%} of a step   goal < 1%")


def main() -> None:
    torch.set_num_threads(1)  # steady figures on a shared 2-core machine
    telemetry_overhead()
    command_latency()
    checkpoint_stall()
    replica_guard()


if __name__ == "__main__":
    main()
