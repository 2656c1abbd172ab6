"""Trainer figures: telemetry overhead, command latency under long steps, checkpoint stall.

Run with `python -m bench trainer`. Prints measurements side by side with their goals.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

import ckpt
import protocol
from trainer import models
from trainer.config import TelemetryConfig
from trainer.snapshot import BackgroundWriter, SnapshotBuffers, capture_state
from trainer.telemetry import Telemetry


class _Step:
    """A small real training step (VSR++ forward/backward/AdamW), built once."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = models.build("vsrpp", num_frames=5, n_feats=16, n_blocks=2, scale=3)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.x = torch.rand(2, 5, 3, 24, 24)
        self.it = 0

    def rate(self, telemetry: Telemetry, seconds: float) -> float:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            loss = self.model(self.x).mean()
            loss.backward()
            self.opt.step()
            self.opt.zero_grad()
            n += 1
            self.it += 1
            telemetry.step(self.it, loss.detach(), 1e-4)
        return n / (time.perf_counter() - start)


def _reader(sub: protocol.Subscriber, stop: threading.Event) -> None:
    while not stop.is_set():
        sub.recv(50)


def telemetry_overhead(rounds: int = 8, seconds: float = 1.0) -> None:
    cfg = TelemetryConfig(status_hz=10.0, heartbeat_s=0.5)
    pub = protocol.Publisher("tcp://127.0.0.1:*", "bench")
    reading, idle = protocol.Subscriber(pub.endpoint), protocol.Subscriber(pub.endpoint)
    stop = threading.Event()
    threading.Thread(target=_reader, args=(reading, stop), daemon=True).start()
    off = Telemetry(None, cfg, max_iters=10**9)
    on = Telemetry(pub, cfg, max_iters=10**9)
    on.start()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    step, ratios = _Step(), []
    step.rate(off, seconds)  # warm-up
    for i in range(rounds):  # interleaved A/B (order alternating) so machine noise hits both
        first, second = (on, off) if i % 2 else (off, on)
        a, b = step.rate(first, seconds), step.rate(second, seconds)
        ratios.append(a / b if first is on else b / a)
    rss1 = proc.memory_info().rss
    stop.set()
    on.close()
    print(f"step rate, telemetry + live subscriber (+ one that never reads) / telemetry off: "
          f"median {statistics.median(ratios):.3f}  (rounds {', '.join(f'{r:.3f}' for r in ratios)})"
          f"   goal >= 0.99")
    print(f"trainer RSS change over {rounds * 2 * seconds:.0f} s with a never-reading subscriber: "
          f"{(rss1 - rss0) / 1e6:+.1f} MB   goal: bounded (PUB high-water mark {1000} frames)")
    print(f"frames published {pub.sent}, dropped at the socket {pub.dropped}")
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


def checkpoint_stall(reps: int = 4) -> None:
    torch.manual_seed(0)
    model = models.build("vsrpp", num_frames=5, n_feats=128, n_blocks=32, scale=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        writer, buffers = BackgroundWriter(), SnapshotBuffers()
        blocked, sync = [], []
        for i in range(reps):  # the first snapshot allocates the reused buffers
            writer.wait()  # as the loop does; a write still in flight would be counted here
            t0 = time.perf_counter()
            state = capture_state(step=i, epoch=0, kind="regular", model=model, optimizer=opt,
                                  extra={}, buffers=buffers)
            writer.submit(Path(tmp) / ckpt.checkpoint_name(i), state)
            blocked.append(time.perf_counter() - t0)
            writer.wait()
            t0 = time.perf_counter()
            live = {"step": i, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict()}
            ckpt.save_checkpoint(Path(tmp) / ckpt.checkpoint_name(100 + i), live)
            sync.append(time.perf_counter() - t0)
    b, s = statistics.median(blocked[1:]), statistics.median(sync)
    print(f"loop blocked per checkpoint of a {params:.1f} M-parameter model (+AdamW state): "
          f"background {b * 1000:.0f} ms (first one, allocating: {blocked[0] * 1000:.0f} ms) vs "
          f"synchronous save+fsync {s * 1000:.0f} ms = {b / s:.3f}x   goal <= 0.2x")


def main() -> None:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    telemetry_overhead()
    command_latency()
    checkpoint_stall()


if __name__ == "__main__":
    main()
