"""The trainer starts the web monitor as its own process, and stops it; a taken port is no failure."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

from tests.trainer_support import free_port
from trainer.__main__ import build_parser, start_monitor, stop_monitor


def _args(port: int):
    return build_parser().parse_args(["--monitor-port", str(port), "--pub", f"tcp://*:{free_port()}",
                                      "--rep", f"tcp://127.0.0.1:{free_port()}"])


def test_monitor_runs_as_a_separate_process_and_is_stopped(capsys):
    port = free_port()
    proc = start_monitor(_args(port))
    try:
        assert f"🌐 Web monitor active: http://localhost:{port}" in capsys.readouterr().out
        assert "tcp://127.0.0.1:" in " ".join(proc.args)  # a wildcard bind is reached over loopback
        deadline, status = time.monotonic() + 30, None
        while status is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
                    status = json.load(r)
            except OSError:
                time.sleep(0.2)
        assert status is not None and status["trainer_online"] is False
    finally:
        stop_monitor(proc)
    assert proc.poll() is not None


def test_a_taken_monitor_port_is_reported_and_training_goes_on(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert start_monitor(_args(taken.getsockname()[1])) is None
    out = capsys.readouterr().out
    assert "is taken" in out and "Web monitor active" not in out
