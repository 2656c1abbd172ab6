"""The terminal: progress line, messages, the start prompt and checkpoint choice.

With a TTY a tqdm bar redraws at most once a second; without one (CI, nohup)
plain log lines appear every `log_every_s` seconds. Nothing here ever blocks
without a TTY: `--resume ask` then means `latest`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ckpt
from trainer.train.checkpoint import ResumeError

KEYS_HINT = "Keys: [P] pause/resume  [V] validate now  [C] checkpoint now  [Q] save and quit"


def is_tty(stream: Any = None) -> bool:
    stream = stream if stream is not None else sys.stdin
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Console:
    """Progress and messages; `bar` only when stderr is a terminal."""

    def __init__(self, *, total: int, log_every_s: float = 10.0, tty: bool | None = None,
                 enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = is_tty(sys.stderr) if tty is None else tty
        self.total = total
        self.log_every_s = log_every_s
        self._last_line = 0.0
        self._last_postfix = 0.0
        self.bar: Any = None  # drawn from the first step on, after any start prompt

    def _open_bar(self, initial: int) -> None:
        from tqdm import tqdm

        width = _terminal_width()  # 0 on a pty nobody sized: tqdm would then draw nothing
        fixed = {} if width > 0 else {"ncols": 100, "nrows": 24}
        self.bar = tqdm(total=self.total, initial=initial, mininterval=1.0, dynamic_ncols=width > 0,
                        unit="it", file=sys.stderr, leave=True, **fixed)

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, flush=True)

    def progress(self, iteration: int, status: dict[str, Any]) -> None:
        """Advance to `iteration`; `status` is the latest published status (plain numbers)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty and self.bar is None:
            self._open_bar(iteration - 1)
        if self.bar is not None:
            self.bar.update(iteration - self.bar.n)
            if now - self._last_postfix >= 1.0:
                self._last_postfix = now
                self.bar.set_postfix_str(
                    f"loss {status['total_loss']:.4f} lr {status['learn_rate']:.2e} "
                    f"ETA {status['time_remaining']}", refresh=False)
        elif now - self._last_line >= self.log_every_s or iteration >= self.total:
            self._last_line = now
            print(status_line({**status, "iteration": iteration}), flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def status_line(status: dict[str, Any]) -> str:
    return (f"it {status['iteration']}/{status['max_iterations']} | loss {status['total_loss']:.4f}"
            f" | lr {status['learn_rate']:.2e} | {status['iter_speed']:.2f} it/s"
            f" | ETA {status['time_remaining']}")


def archive_run(run_dir: Path) -> Path:
    """Move everything in `run_dir` (earlier archives excepted) into run_dir/archive-<timestamp>/."""
    target = run_dir / f"archive-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while target.exists():
        n += 1
        target = run_dir / f"archive-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    target.mkdir(parents=True)
    for entry in sorted(run_dir.iterdir()):
        if entry != target and not entry.name.startswith("archive-"):
            shutil.move(str(entry), str(target / entry.name))
    return target


def ask_resume_or_new(count: int, run_dir: Path, input_fn: Callable[[str], str] = input,
                      print_fn: Callable[[str], None] = print) -> str:
    """'resume' or 'new': the prompt's answers R/resume (or Enter) and N/new, any case; anything else asks again."""
    print_fn(f"\n{count} checkpoint(s) found in {run_dir}.")
    while True:
        answer = input_fn("[R]esume (default) or start a [N]ew run (old files are kept in an archive)? ")
        answer = answer.strip().lower()
        if answer in ("", "r", "resume"):
            return "resume"
        if answer in ("n", "new"):
            return "new"
        print_fn(f"please answer R or N (got {answer!r})")


def choose_checkpoint(run_dir: Path, spec: str, *, tty: bool, input_fn: Callable[[str], str] = input,
                      print_fn: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The checkpoint entry to resume from, or None for a fresh start (old files archived)."""
    entries = [e for e in ckpt.list_checkpoints(run_dir) if e.get("status", "ok") == "ok"] \
        if run_dir.exists() else []
    if spec == "ask" and not tty:
        spec = "latest"
    if spec in ("never", "ask") and entries:
        if spec == "never" or ask_resume_or_new(len(entries), run_dir, input_fn, print_fn) == "new":
            where = archive_run(run_dir)
            print_fn(f"Starting a new run; the previous files were moved to {where}")
            return None
        return ckpt.prompt_for_checkpoint(entries, input_fn=input_fn, print_fn=print_fn)
    if spec in ("never", "ask") or (spec in ("latest", "best") and not entries):
        return None
    try:
        chosen = ckpt.select_checkpoint(run_dir, spec)
    except ckpt.CheckpointError as exc:
        raise ResumeError(f"--resume {spec}: {exc}") from None
    if chosen is None:
        known = ", ".join(str(e["step"]) for e in entries) or "none"
        raise ResumeError(f"--resume {spec}: no usable checkpoint matches in {run_dir} (steps: {known})")
    return chosen
