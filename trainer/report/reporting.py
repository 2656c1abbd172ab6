"""The reporting side of a run: terminal, run-folder logs, telemetry, and the command inputs.

Only rank 0 prints, logs, publishes and serves commands; on other ranks every part here is
silent (Telemetry without a publisher, a Controller without inputs). The run folder's logs and
identity are opened by `start`, once the run folder is settled (starting anew archives its files).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ckpt
import protocol
from protocol import CommandName, json_safe
from trainer.config import Config
from trainer.report import identity
from trainer.report.console import Console
from trainer.report.control import Controller, KeyReader, validate_set_args
from trainer.report.history import history
from trainer.report.runlog import RunLog
from trainer.report.telemetry import Telemetry

Query = Callable[[dict[str, Any]], dict[str, Any]]


class Reporting:
    """Console, RunLog, Telemetry (with its Publisher) and the Controller (command server, keys)."""

    def __init__(self, cfg: Config, opts: Any, *, main: bool, get_cfg: Callable[[], Config]) -> None:
        self.run_dir = Path(opts.run_dir)
        self.console = Console(total=cfg.train.max_iters, log_every_s=cfg.telemetry.log_every_s,
                               enabled=main and opts.console)
        self._main, self._tensorboard = main, cfg.telemetry.tensorboard
        self.runlog: RunLog | None = None
        self.identity: identity.RunIdentity | None = None
        self.publisher: protocol.Publisher | None = None
        self.controller = Controller()
        try:
            server, keys = self._open_inputs(opts, get_cfg) if main else (None, None)
        except BaseException:  # e.g. a port in use: release what is open already
            if self.publisher is not None:
                self.publisher.close()
            raise
        self.telemetry = Telemetry(self.publisher, cfg.telemetry, max_iters=cfg.train.max_iters,
                                   echo=self.console.info)
        self.controller = Controller(server, keys)
        if server is not None:
            server.start()

    def _open_inputs(self, opts: Any, get_cfg: Callable[[], Config]) -> tuple[Any, KeyReader | None]:
        """The telemetry publisher (kept in self.publisher), command server and key reader asked for."""
        security = protocol.SecurityConfig.from_keys_dir(opts.keys) if opts.keys else None
        for endpoint in (opts.pub, opts.rep):
            if endpoint:
                protocol.check_bind_allowed(endpoint, security, opts.insecure)
        if opts.pub:
            self.publisher = protocol.Publisher(opts.pub, identity.display_name(self.run_dir), security=security)
        server = None
        if opts.rep:
            server = protocol.CommandServer(opts.rep, queries=self._queries(), actions=protocol.ACTION_COMMANDS,
                                            security=security, validators={CommandName.SET: validate_set_args(get_cfg)})
        return server, KeyReader() if opts.console and KeyReader.available() else None

    def start(self, iteration: int) -> None:
        """Open the run folder's logs and identity (rank 0), then publish from here on, saying `iteration`
        (the resume step) from the first frame. metrics.jsonl gets a `start` record: steps after
        `iteration` written before it were redone (trainer.report.history_index)."""
        if self._main:  # the `history` query sees the logs once the start record has cut back the redone steps
            runlog = RunLog(self.run_dir, tensorboard=self._tensorboard)
            self.identity = identity.load_or_create(self.run_dir)
            runlog.metrics("start", iteration, {"run_id": self.identity.id})
            self.runlog = self.telemetry.runlog = runlog
            if self.publisher is not None:
                self.publisher.run_id = self.identity.id
        self.telemetry.iteration = iteration
        self.telemetry.publish_status(force=True)
        self.telemetry.start()

    def _queries(self) -> dict[str, Query]:
        """Answered on the command server's thread."""
        def checkpoints(_args: dict[str, Any]) -> dict[str, Any]:
            return {"checkpoints": json_safe(ckpt.list_checkpoints(self.run_dir))}

        return {
            CommandName.STATUS: lambda _a: {"status": self.telemetry.latest_status()},
            CommandName.HISTORY: self._history,
            CommandName.CHECKPOINTS: checkpoints,
        }

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """The whole run from the run folder's logs (trainer.report.history); empty until `start`."""
        runlog, run, name = self.runlog, self.identity, identity.display_name(self.run_dir)
        if runlog is None or run is None:
            return {"run": name, "history": [], "validations": [], "from": 0, "to": 0, "last_iteration": 0}
        return {"run": name, "run_id": run.id, **history(runlog.history, args)}

    def close(self) -> None:
        for part in (self.controller, self.telemetry, self.publisher, self.runlog, self.console):
            if part is not None:
                part.close()
        sys.stdout.flush()

