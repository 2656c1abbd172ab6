"""Alert benchmarks: how soon a webhook hears of an event, how soon of silence, and whether a webhook
receiver that never answers slows the dashboard's WebSocket push (it must not).

A `protocol.Publisher` stands in for the trainer; `python -m monitor` runs in its own process; the
receiver is the tests' real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

from bench.bench_monitor import free_port, monitor_process, pct, ws_latency
from protocol import Publisher
from tests.webhook_support import Receiver

EVENTS = 40
STALL_S = 2.0


def joined(pub: Publisher, receiver: Receiver, timeout: float = 30.0) -> None:
    """Heartbeats until the monitor's SUB socket has joined: its `started` alert reached the receiver."""
    deadline = time.monotonic() + timeout
    while not receiver.kinds():
        if time.monotonic() > deadline:
            raise RuntimeError("the monitor sent no alert: is it running?")
        pub.publish("heartbeat", state="training", iteration=0)
        time.sleep(0.1)


def event_to_post() -> list[float]:
    """Seconds from publishing a `diverged` event to the receiver holding its alert."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Receiver() as receiver, Publisher(endpoint, "bench-alerts") as pub:
        with monitor_process(endpoint, "--db", ":memory:", "--notify", receiver.url):
            joined(pub, receiver)
            sent = {}
            for step in range(1, EVENTS + 1):
                sent[step] = time.time()
                pub.publish("event", kind="diverged", message="bench", data={"step": step, "restore_step": step - 1})
                time.sleep(0.1)
            deadline = time.monotonic() + 10
            while len(receiver.bodies("diverged")) < EVENTS and time.monotonic() < deadline:
                time.sleep(0.05)
            got = {body["iteration"]: t for t, _, body in receiver.posts if body.get("kind") == "diverged"}
    return [got[step] - sent[step] for step in sorted(got)]


def silence_to_post() -> float:
    """Seconds from a run's last frame to its `stalled` alert at the receiver, with --stall-after 2."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Receiver() as receiver, Publisher(endpoint, "bench-silent") as pub:
        with monitor_process(endpoint, "--db", ":memory:", "--notify", receiver.url, "--stall-after", str(STALL_S)):
            joined(pub, receiver)
            last = time.time()
            pub.publish("heartbeat", state="training", iteration=1)
            deadline = time.monotonic() + STALL_S + 10
            while not receiver.bodies("stalled") and time.monotonic() < deadline:
                time.sleep(0.02)
            return next(t for t, _, body in receiver.posts if body.get("kind") == "stalled") - last


def push_latency(receiver: Receiver) -> tuple[list[float], int]:
    """Publish -> WebSocket latencies of status frames while a `diverged` alert goes to `receiver`
    every 50 ms; and how many alerts it was sent meanwhile."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(endpoint, "bench-push", hwm=10_000) as pub:
        with monitor_process(endpoint, "--db", ":memory:", "--notify", receiver.url) as base:
            stop = threading.Event()

            def rollbacks() -> None:
                step = 0
                while not stop.wait(0.05):
                    step += 1
                    pub.publish("event", kind="diverged", message="bench", data={"step": step, "restore_step": 0})

            thread = threading.Thread(target=rollbacks, daemon=True)
            thread.start()
            try:
                latencies = asyncio.run(ws_latency(base, pub))
            finally:
                stop.set()
                thread.join()
    return latencies, len(receiver.posts)


def main() -> None:
    delays = [d * 1000 for d in event_to_post()]
    print(f"event -> webhook POST ({len(delays)} diverged events): p50 {statistics.median(delays):.1f} ms, "
          f"p95 {pct(delays, 0.95):.1f} ms, max {max(delays):.1f} ms")
    print(f"last frame -> stalled POST with --stall-after {STALL_S:g}: {silence_to_post():.2f} s "
          f"(the check runs every 0.5 s)")
    rows = []
    for name, receiver in (("live receiver", Receiver()), ("receiver that never answers", Receiver(hang=True))):
        with receiver:
            latencies, posts = push_latency(receiver)
        ms = [x * 1000 for x in latencies]
        rows.append(f"  {name:28s} p50 {statistics.median(ms):6.1f} ms  p99 {pct(ms, 0.99):6.1f} ms  "
                    f"({posts} alert POSTs reached it)")
    print("publish -> WebSocket push, a diverged alert every 50 ms:\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
