"""Monitor benchmarks: publish-to-browser latency, /api/status under 50 clients, memory
after one million frames.

Goals: publisher -> monitor -> WebSocket p50 < 50 ms and p99 < 200 ms on loopback;
memory flat however long the run (history bounded).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2 as httpx
import psutil
import websockets

from monitor.state import MonitorState
from protocol import Publisher

FRAMES = 500
CLIENTS = 50
REQUESTS = 2000
MILLION = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_fields(i: int) -> dict:
    return {"iteration": i, "total_loss": 0.1, "learn_rate": 1e-4, "time_remaining": "01:00:00",
            "iter_speed": 10.0, "gpu_memory": 0.0, "best_score": None, "is_validating": False,
            "is_training": True, "timestamp": time.time(), "is_paused": False,
            "max_iterations": 10**6}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def monitor_process(pub: str, *extra: str) -> Iterator[str]:
    """`python -m monitor` in its own process (no GIL shared with the load generator); `extra`: more flags."""
    port = free_port()
    rep = f"tcp://127.0.0.1:{free_port()}"
    db = [] if "--db" in extra else ["--db", ":memory:"]  # never the user's file
    cmd = [sys.executable, "-m", "monitor", "--pub", pub, "--rep", rep, "--port", str(port), *db, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/healthz", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def ws_latency(base: str, pub: Publisher) -> list[float]:
    sent: dict[int, float] = {}
    got: list[float] = []
    async with websockets.connect(base.replace("http", "ws") + "/ws", max_size=None) as ws:
        await ws.recv()  # snapshot
        while True:  # the SUB socket joins late: publish until the first frame comes through
            pub.publish("status", **status_fields(-1))
            try:
                await asyncio.wait_for(ws.recv(), 0.2)
                break
            except TimeoutError:
                continue

        async def receive() -> None:
            while len(got) < FRAMES:
                msg = json.loads(await ws.recv())
                i = msg.get("data", {}).get("iteration", -1) if msg.get("type") == "frame" else -1
                if i in sent:
                    got.append(time.perf_counter() - sent.pop(i))

        receiver = asyncio.ensure_future(receive())
        for i in range(FRAMES):
            sent[i] = time.perf_counter()
            pub.publish("status", **status_fields(i))
            await asyncio.sleep(0.01)
        await asyncio.wait_for(receiver, 10)
    return got


async def status_load(base: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    per_client = REQUESTS // CLIENTS
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:

        async def worker() -> None:
            for _ in range(per_client):
                start = time.perf_counter()
                (await client.get("/api/status")).raise_for_status()
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        return len(latencies) / (time.perf_counter() - start), latencies


async def raw_status_load(base: str) -> tuple[float, list[float]]:
    """The same load from bare keep-alive sockets: shows the server's capacity when the
    load generator (httpx costs ~1 ms of CPU per request) is not what saturates the cores."""
    host, port = base.removeprefix("http://").split(":")
    request = f"GET /api/status HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    latencies: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(REQUESTS // CLIENTS):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return len(latencies) / (time.perf_counter() - start), latencies


def memory_after_million() -> None:
    gc.collect()
    proc = psutil.Process(os.getpid())
    before = proc.memory_info().rss
    state = MonitorState()
    start = time.perf_counter()
    for i in range(MILLION):
        payload = {"v": 1, "run": "bench", "seq": i, "ts": 0.0, **status_fields(i)}
        state.ingest("status", payload)
    elapsed = time.perf_counter() - start
    gc.collect()
    grown = (proc.memory_info().rss - before) / 2**20
    run = state.run("bench")
    points = len(run.history) if run else 0
    print(f"1e6 frames into MonitorState: RSS +{grown:.1f} MiB, {points} live points in memory, "
          f"{MILLION / elapsed:,.0f} frames/s ingest")


def main() -> None:
    pub_endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(pub_endpoint, "bench", hwm=10_000)
    try:
        with monitor_process(pub_endpoint) as base:
            lat = asyncio.run(ws_latency(base, pub))
            ms = [x * 1000 for x in lat]
            print(f"publish -> monitor -> WebSocket ({len(ms)} frames at 100 Hz): "
                  f"p50 {statistics.median(ms):.1f} ms (goal < 50), "
                  f"p99 {pct(ms, 0.99):.1f} ms (goal < 200)")
            for name, load in (("httpx2.AsyncClient", status_load), ("raw sockets", raw_status_load)):
                rate, latencies = asyncio.run(load(base))
                print(f"/api/status, {CLIENTS} concurrent clients ({name}), {len(latencies)} requests: "
                      f"{rate:,.0f} req/s, p50 {statistics.median(latencies) * 1000:.1f} ms, "
                      f"p99 {pct(latencies, 0.99) * 1000:.1f} ms")
    finally:
        pub.close()
    memory_after_million()


if __name__ == "__main__":
    main()
