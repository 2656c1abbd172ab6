"""Real trainer and monitor processes on free loopback ports, and polling with deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx

import protocol
from tests.net_support import free_endpoint, free_port, wait_until  # noqa: F401  (re-exported to fault tests)
from tests.trainer_support import TINY_PROCESS, as_flags

T = TypeVar("T")

# The tests' tiny run (tests/trainer_support.py), as config keys and as CLI flags (TrainerProc adds --no-monitor).
TINY_SETTINGS = TINY_PROCESS
TINY = as_flags(TINY_SETTINGS)
# n_feats=64: ~6 MB checkpoints, so a kill can land in the middle of a write.
BIG = [*TINY, "--set", "model.n_feats=64"]
# One torch thread per process (also train.cpu_threads above): two threads spin badly on a busy 2-core box.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class TrainerProc:
    """`python -m trainer` with --no-monitor, its own ports and an output file to read afterwards."""

    run_dir: Path
    args: list[str]
    pub: str = field(default_factory=free_endpoint)
    rep: str = field(default_factory=free_endpoint)
    proc: subprocess.Popen | None = None
    out_path: Path | None = None
    out_dir: Path | None = None  # where its output file goes (default: beside the run folder)

    def start(self, *, preexec: Callable[[], None] | None = None) -> TrainerProc:
        out_dir = self.out_dir or self.run_dir.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_path = out_dir / f"{self.run_dir.name}-{time.monotonic_ns()}.out"
        cmd = [sys.executable, "-m", "trainer", "--run-dir", str(self.run_dir), "--pub", self.pub,
               "--rep", self.rep, "--no-monitor", *self.args]
        with open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=ENV, preexec_fn=preexec)
        return self

    @property
    def output(self) -> str:
        return self.out_path.read_text() if self.out_path and self.out_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"trainer gone:\n{self.output}"
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"trainer still running after {timeout} s:\n{self.output}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def wait_for_frame(sub: protocol.Subscriber, pred: Callable[[str, dict], bool], timeout: float,
                   what: str) -> dict[str, Any]:
    """The first frame on `sub` for which pred(topic, payload) holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.recv(100)
        if msg is not None and pred(*msg):
            return msg[1]
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def status_at_least(iteration: int) -> Callable[[str, dict], bool]:
    return lambda topic, msg: topic == "status" and msg["iteration"] >= iteration


def event_of(kind: str) -> Callable[[str, dict], bool]:
    return lambda topic, msg: topic == "event" and msg.get("kind") == kind


@dataclass
class MonitorProc:
    """`python -m monitor` serving on a free port, following one trainer."""

    pub: str
    rep: str
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    def start(self) -> MonitorProc:
        db = [] if "--db" in self.extra else ["--db", ":memory:"]  # never the user's file
        cmd = [sys.executable, "-m", "monitor", "--pub", self.pub, "--rep", self.rep,
               "--port", str(self.port), *db, *self.extra]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=ENV)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> dict[str, Any] | None:
        """JSON of GET `path`, or None while the monitor is not serving."""
        text = self.text(path)
        return None if text is None else json.loads(text)

    def text(self, path: str) -> str | None:
        try:
            return httpx.get(self.url + path, timeout=2.0).text
        except httpx.HTTPError:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def newest_status(sub: protocol.Subscriber, timeout: float = 30) -> dict[str, Any]:
    """The newest status frame: drains what is queued, waits for one if none is."""
    newest = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.recv(0 if newest is not None else 100)
        if msg is None and newest is not None:
            return newest
        if msg is not None and msg[0] == "status":
            newest = msg[1]
    raise AssertionError(f"no status frame within {timeout:.0f} s")
