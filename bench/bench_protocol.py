"""Protocol costs: publishing a status frame with no subscriber vs one reading subscriber,
and encode/decode of each message kind. `python -m bench protocol`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from protocol import (
    CommandClient,
    CommandServer,
    Publisher,
    Subscriber,
    decode_message,
    decode_reply,
    decode_request,
    encode_message,
    encode_reply,
    encode_request,
    example_fields,
)

N = 20_000


def per_call_us(fn: Callable[[], object], n: int = N) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def publish_cost(endpoint: str, with_subscriber: bool) -> tuple[float, int]:
    """µs per `publish("status", ...)` and how many frames the subscriber got."""
    fields = example_fields("status")
    received = 0
    stop = threading.Event()
    with Publisher(endpoint, "bench") as pub:
        reader = None
        if with_subscriber:
            sub = Subscriber(pub.endpoint)
            while sub.recv(10) is None:  # wait until connected
                pub.publish("status", **fields)

            def read() -> None:
                nonlocal received
                while not stop.is_set():
                    if sub.recv(50) is not None:
                        received += 1

            reader = threading.Thread(target=read)
            reader.start()
        cost = per_call_us(lambda: pub.publish("status", **fields))
        if reader is not None:
            time.sleep(0.2)
            stop.set()
            reader.join()
            sub.close()
    return cost, received


def spin(stop: threading.Event) -> None:
    count = 0
    while not stop.is_set():
        count += 1


def ping_ms(busy: bool, n: int = 200) -> tuple[float, float]:
    """Mean and worst ping round trip over tcp, optionally while another thread spins in Python
    (a training loop holding the GIL)."""
    stop = threading.Event()
    spinner = threading.Thread(target=spin, args=(stop,))
    times = []
    with CommandServer("tcp://127.0.0.1:*", queries={}) as server:
        with CommandClient(server.endpoint) as client:
            if busy:
                spinner.start()
            for _ in range(n):
                start = time.perf_counter()
                client.request("ping")
                times.append((time.perf_counter() - start) * 1000)
            stop.set()
    if busy:
        spinner.join()
    return sum(times) / n, max(times)


def main() -> None:
    print(f"publish one status frame, mean of {N:,} calls (µs/frame):")
    print(f"{'endpoint':<24}{'no subscriber':>15}{'1 reading sub':>15}{'ratio':>8}{'received':>12}")
    for endpoint in ("inproc://bench-protocol", "tcp://127.0.0.1:*"):
        alone, _ = publish_cost(endpoint, with_subscriber=False)
        read, received = publish_cost(endpoint, with_subscriber=True)
        print(f"{endpoint:<24}{alone:>15.1f}{read:>15.1f}{read / alone:>8.2f}{received:>12,}")

    print("\nping round trip over tcp (ms), the goal is < 100:")
    print(f"{'main thread':<24}{'mean':>10}{'worst':>10}")
    for busy in (False, True):
        mean, worst = ping_ms(busy)
        print(f"{'spinning in Python' if busy else 'idle':<24}{mean:>10.2f}{worst:>10.2f}")

    envelope = {"v": 1, "run": "bench", "seq": 1, "ts": time.time()}
    print("\nencode / decode (µs/call):")
    print(f"{'message':<28}{'bytes':>8}{'encode':>10}{'decode':>10}")
    for topic in ("status", "heartbeat", "event", "validation"):
        payload = {**envelope, **example_fields(topic)}
        frames = encode_message(topic, payload)
        enc = per_call_us(lambda p=payload, t=topic: encode_message(t, p))
        dec = per_call_us(lambda f=frames: decode_message(f))
        print(f"{topic + ' message':<28}{len(frames[1]):>8}{enc:>10.1f}{dec:>10.1f}")
    request = encode_request("set", {"key": "train.lr", "value": 0.001})
    reply = encode_reply(True, status={**envelope, **example_fields("status")})
    rows = [("set request", request, lambda: encode_request("set", {"key": "train.lr", "value": 0.001}),
             lambda: decode_request(request)),
            ("status reply", reply, lambda: encode_reply(True, status=example_fields("status")),
             lambda: decode_reply(reply))]
    for name, data, enc_fn, dec_fn in rows:
        print(f"{name:<28}{len(data):>8}{per_call_us(enc_fn):>10.1f}{per_call_us(dec_fn):>10.1f}")


if __name__ == "__main__":
    main()
