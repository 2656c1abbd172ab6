"""What can steer a running trainer: remote commands, terminal keys, `set` knobs.

Remote commands (protocol.CommandServer) and keys (KeyReader, a thread reading
stdin in cbreak mode) end up in one list of `Action`s that the loop drains at
the top of each iteration.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import select
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from protocol import CommandName
from trainer.config import Config

TOGGLE_PAUSE = "toggle_pause"  # the P key's own action: pause or resume, whichever applies
KEYS = {"p": TOGGLE_PAUSE, "v": CommandName.VALIDATE, "c": CommandName.SAVE, "q": CommandName.STOP}

# Knobs that are safe to change while training: dotted config key -> type.
SETTABLE: dict[str, type] = {
    "schedule.lr_max": float,
    "schedule.lr_min": float,
    "train.val_every": int,
    "train.save_every": int,
    "clip.start": float,
    "clip.adaptive": bool,
    "clip.momentum": float,
    "clip.percentile": float,
    # what a diverging run may need while it runs; they act at the next check or rollback. Not the
    # cadences (check_every, snapshot_every) or `enabled`: every rank and a resumed run decide at the same steps
    "divergence.max_skips": int,
    "divergence.max_rollbacks": int,
    "divergence.lr_factor": float,
    "divergence.lr_steps": int,
}


@dataclass
class Action:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    source: str = "remote"

    def to_wire(self) -> tuple[str, dict[str, Any], str]:
        return (self.name, self.args, self.source)


def with_setting(cfg: Config, key: str, value: Any) -> Config:
    """A copy of `cfg` with one settable knob changed; ValueError says why when it is not allowed."""
    if key not in SETTABLE:
        raise ValueError(f"{key!r} cannot be set while training; settable: {', '.join(SETTABLE)}")
    kind = SETTABLE[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key} must be {kind.__name__}, got {value!r}")
    section, name = key.split(".")
    try:
        part = dataclasses.replace(getattr(cfg, section), **{name: value})
    except ValueError as exc:  # ConfigError or a component's own validation
        raise ValueError(str(exc)) from None
    return dataclasses.replace(cfg, **{section: part})


def validate_set_args(cfg_getter: Any) -> Any:
    """A validator for the command server: checks `{"key": ..., "value": ...}` against the live config."""

    def check(args: dict[str, Any]) -> None:
        if "key" not in args or "value" not in args:
            raise ValueError('set expects args {"key": KEY, "value": VALUE}')
        with_setting(cfg_getter(), str(args["key"]), args["value"])

    return check


class KeyReader:
    """Reads single key presses from a TTY stdin without blocking the loop (cbreak, restored on close)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self.actions: queue.Queue[Action] = queue.Queue()
        self._stop = threading.Event()
        self._saved: Any = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def available(stream: Any = None) -> bool:
        stream = stream if stream is not None else sys.stdin
        try:
            return stream.isatty() and os.name == "posix"
        except (AttributeError, ValueError):
            return False

    def start(self) -> None:
        import termios
        import tty

        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._run, name="keys", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self.stream.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            char = os.read(fd, 1).decode(errors="ignore").lower()
            if char in KEYS:
                self.actions.put(Action(KEYS[char], source="key"))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None


class Controller:
    """Merges the command server's queue and the key reader's into one list of actions."""

    def __init__(self, server: Any | None = None, keys: KeyReader | None = None) -> None:
        self.server = server
        self.keys = keys

    def drain(self) -> list[Action]:
        actions: list[Action] = []
        if self.server is not None:
            for cmd in self.server.drain():
                actions.append(Action(cmd.name, dict(cmd.args or {}), "remote"))
        if self.keys is not None:
            while True:
                try:
                    actions.append(self.keys.actions.get_nowait())
                except queue.Empty:
                    break
        return actions

    def close(self) -> None:
        if self.keys is not None:
            self.keys.close()
        if self.server is not None:
            self.server.close()
