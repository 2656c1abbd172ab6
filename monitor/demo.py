"""`just demo`: mock trainer(s) publishing realistic frames + the monitor on port 5051.

The mock speaks the real protocol over real ZeroMQ sockets (free loopback ports),
so the dashboard, the API and `python -m protocol` all work against it.
"""

from __future__ import annotations

import argparse

from protocol import LOOPBACK

from .config import MonitorConfig, TrainerEndpoints
from .mock import MockTrainer

__all__ = ["MockTrainer", "main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m monitor.demo", description=__doc__)
    p.add_argument("--port", type=int, default=5051, help="HTTP port (default 5051)")
    p.add_argument("--host", default=LOOPBACK, help=f"address to serve on (default {LOOPBACK})")
    p.add_argument("--runs", type=int, default=1, help="how many mock runs to compare (default 1)")
    p.add_argument("--speed", type=float, default=12.0, help="mock iterations per second")
    p.add_argument("--validate-every", type=int, default=300,
                   help="mock validation every N iterations (0: only when asked)")
    p.add_argument("--spike-at", type=int, default=0,
                   help="the first run acts out a loss spike at step N: skipped steps, a rollback (0: never)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from .__main__ import serve

    args = parse_args(argv)
    mocks = [
        MockTrainer("demo" if i == 0 else f"demo-{i + 1}", speed=args.speed * (1 + 0.3 * i),
                    validate_every=args.validate_every, start_iteration=1000 * i,
                    spike_at=args.spike_at if i == 0 else 0).start()
        for i in range(max(args.runs, 1))
    ]
    try:
        for m in mocks:
            print(f"Mock trainer {m.run!r}: PUB {m.pub_endpoint}  REP {m.rep_endpoint}", flush=True)
        trainers = [TrainerEndpoints(m.pub_endpoint, m.rep_endpoint) for m in mocks]
        serve(MonitorConfig(trainers=trainers, host=args.host, port=args.port, insecure=True))
    except KeyboardInterrupt:
        pass
    finally:
        for m in mocks:
            m.stop()
        print("demo stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
