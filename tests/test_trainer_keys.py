"""On a terminal: the start prompt, then keys V (validate now), P (pause/resume), Q (save, exit 0)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

import ckpt
import protocol
from tests.trainer_support import ONE_THREAD, free_port, wait_for
from tests.trainer_support import TINY_FLAGS as TINY
from tests.trainer_support import make_trainer as _trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Terminal:
    """A child process on a pseudo-terminal; `output` collects what it drew."""

    def __init__(self, cmd: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=ONE_THREAD)
        os.close(slave)
        self.output = b""

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def read(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:
                return

    def expect(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            assert time.monotonic() < deadline, f"{text!r} never shown; got {self.output[-500:]!r}"
            self.read()
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
            time.sleep(0.05)
        self.read()
        os.close(self.master)
        return self.proc.wait(timeout=1)


def _earlier_run(run_dir) -> None:
    """A run stopped at step 2, with the same tiny model the command line below asks for."""
    trainer = _trainer(run_dir, stop_at=2, **{"train.num_workers": 0})
    assert trainer.run() == 0


def test_start_prompt_then_keys_validate_pause_and_quit_with_a_checkpoint(tmp_path):
    _earlier_run(tmp_path / "run")
    pub, rep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    term = Terminal([sys.executable, "-m", "trainer", "--run-dir", str(tmp_path / "run"), "--pub", pub,
                     "--rep", rep, "--max-iters", "100000", "--val-every", "100000", "--save-every", "100000",
                     *TINY])
    sub = protocol.Subscriber(pub)
    try:
        term.expect("[R]esume")
        term.press("r\n")
        term.expect("AVAILABLE CHECKPOINTS")
        term.press("\n")  # Enter: the latest
        wait_for(sub, lambda t, m: t == "status" and m["iteration"] >= 4)
        term.press("v")
        wait_for(sub, lambda t, m: t == "event" and m["kind"] == "validation_finished")
        term.press("p")
        wait_for(sub, lambda t, m: t == "status" and m["is_paused"])
        term.press("p")
        wait_for(sub, lambda t, m: t == "event" and m["kind"] == "resumed")
        term.press("q")
        assert term.wait(60) == 0
    finally:
        sub.close()
        if term.proc.poll() is None:
            term.proc.kill()
    text = term.output.decode(errors="replace")
    assert "Resumed from checkpoint_step_0000002.pth" in text
    assert "it/s" in text and "Keys: [P] pause/resume" in text and "Stopping at step" in text
    types = [e["type"] for e in ckpt.list_checkpoints(tmp_path / "run")]
    assert types.count("regular") == 2 and "best" in types
