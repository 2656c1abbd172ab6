"""The training loop, top to bottom: commands, LR, forward/backward, clip, step, log, validate, save.

`Trainer(cfg, opts)` builds a run (trainer.train.run), `run()` trains
until max_iters, a stop command, Q, SIGINT/SIGTERM or an exception; every way out
leaves a checkpoint with the real step behind it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import ckpt
import protocol
from protocol import CommandName
from trainer.config import Config, ConfigError
from trainer.data import DataError
from trainer.report.control import TOGGLE_PAUSE, Action, with_setting
from trainer.train.checkpoint import ResumeError, to_checkpoint
from trainer.train.distributed import broadcast_object, sync_step
from trainer.train.divergence import DivergenceError, optimizer_step
from trainer.train.init_from import InitFrom
from trainer.train.replicas import ReplicaMismatch
from trainer.train.run import Run, build_run
from trainer.train.schedule import set_lr
from trainer.train.snapshot import capture_rng, restore_rng, unwrap

# Errors that mean "fix your input", reported as one line by `python -m trainer` (a run that keeps
# diverging after its rollbacks needs other settings too).
USER_ERRORS = (ConfigError, ResumeError, DataError, protocol.SecurityError, protocol.EndpointError,
               ckpt.CheckpointError, DivergenceError)
# Errors by which a run stops itself on purpose (after its emergency checkpoint): one line, exit 3.
RUN_STOPS = (ReplicaMismatch,)
# Actions that may write a checkpoint: the DDP replicas are compared before them.
CHECKPOINTING = (CommandName.VALIDATE, CommandName.SAVE, CommandName.STOP)


@dataclass
class RunOptions:
    """What the command line adds to the config: where, how to resume, which sockets."""

    run_dir: Path = Path("runs/default")
    resume: str = "ask"
    pub: str | None = protocol.DEFAULT_PUB
    rep: str | None = protocol.DEFAULT_REP
    keys: str | None = None
    insecure: bool = False
    interactive: bool | None = None  # None: ask when stdin is a TTY
    console: bool = True
    init_from: InitFrom | None = None  # --init-from: a new run starts from this file's weights


class Trainer:
    def __init__(self, cfg: Config, opts: RunOptions) -> None:
        self.cfg = cfg
        self.opts = opts
        self.setup: Run = build_run(cfg, opts, get_cfg=lambda: self.cfg)  # device, ranks, report, state, saver
        self.step = self.setup.start_step
        self.paused = False
        self._signal: int | None = None
        self._stop_reason = ""
        self._old_handlers: dict[int, Any] = {}
        # what each protocol action does here; True: training stops now (a test checks every action has one)
        self.handlers: dict[str, Callable[[Action], bool]] = {
            CommandName.VALIDATE: self._on_validate, CommandName.SAVE: self._on_save,
            CommandName.PAUSE: lambda a: self._pause(True, a), CommandName.RESUME: lambda a: self._pause(False, a),
            CommandName.SET: self._on_set, CommandName.STOP: self._on_stop,
        }

    # ---- the loop -------------------------------------------------------------
    def run(self) -> int:
        state, tel = self.setup.state, self.setup.report.telemetry
        self._install_signal_handlers()
        tel.event("started", f"Training from step {self.step} to {self.cfg.train.max_iters} on "
                  f"{self.setup.device}", step=self.step, device=str(self.setup.device),
                  world_size=self.setup.dist.world_size)
        tel.set_state("training")
        state.divergence.start(self.step, state, self.setup.run_dir)
        try:
            if self.setup.validate_first:  # a fine-tune's chart and _best start from the file's quality
                self.validate()
            while self.step < self.cfg.train.max_iters:
                # commands from the network, the keyboard and signals (same on every rank)
                if self._handle_commands():
                    return self._stop()
                # learning rate and model switches for this step (pure functions of the step)
                lr = state.lr(self.step, self.cfg)
                set_lr(state.optimizer, lr)
                state.prepare_step(self.step)
                # forward/backward with gradient accumulation, then clip and step
                loss, grad_norm, loss_parts = self._train_step()
                self.step += 1
                state.batches.mark_step()
                # skipped steps counted, a rollback when the run diverged (at fixed steps, on every rank)
                state.divergence.end_step(self.step, state, tel, self.setup.run_dir)
                # log (the loss tensor is read only when a status goes out)
                tel.step(self.step, loss, lr, epoch=state.batches.epoch, grad_norm=grad_norm, losses=loss_parts)
                self.setup.report.console.progress(self.step, tel.latest_status())
                # validate and checkpoint on schedule; DDP replicas compared first, and every N steps
                last = self.step == self.cfg.train.max_iters
                val_due = last or self.step % self.cfg.train.val_every == 0
                save_due = last or self.step % self.cfg.train.save_every == 0
                self.setup.guard.after_step(self.step, check_now=val_due or save_due)
                if val_due:
                    self.validate()
                if save_due:
                    self.save("regular")
            tel.event("finished", f"Reached max_iters={self.cfg.train.max_iters}", step=self.step)
            return 0
        except DivergenceError as exc:  # the run stops itself; nothing diverged is saved
            tel.event("error", f"Training stopped at step {self.step}: {exc}", step=self.step, fatal=True)
            raise
        except Exception as exc:
            tel.event("error", f"Training failed at step {self.step}: {type(exc).__name__}: {exc}",
                      step=self.step, fatal=True)
            try:
                self.save("emergency", sync=True)
            except Exception as save_exc:  # keep the original error as the one that is raised
                tel.event("error", f"Emergency checkpoint failed too: {save_exc}", step=self.step)
            raise
        finally:
            self.close()

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, gradient norm, loss parts) of one optimizer step, on the device."""
        state, accum, tel = self.setup.state, self.cfg.train.accum_steps, self.setup.report.telemetry
        total = torch.zeros((), device=self.setup.device)
        tracked = state.track_activity(tel.activity_due())
        for micro in range(accum):
            batch = state.batches.next()
            frames = batch["lr"].to(self.setup.device, non_blocking=True)  # (B, T, 3, h, w)
            frames = state.divergence.inject(self.step + 1, frames)  # the test hook; else `frames`
            target = batch["gt"].to(self.setup.device, non_blocking=True)  # (B, 3, H, W) or (B, T, 3, H, W)
            with state.no_sync(micro < accum - 1), state.autocast():
                pred = centre_if_single_target(state.model(frames), target)
                loss, parts = state.loss_fn(pred, target)
            # a non-finite loss turns every gradient non-finite, so the gradient norm decides alone
            state.scaler.scale(state.divergence.poison(loss) / accum).backward()
            total += loss.detach() / accum
        state.scaler.unscale_(state.optimizer)
        grad_norm = state.clip(state.model.parameters())
        self.setup.saver.wait_copied()  # a checkpoint snapshot may still be copying these weights
        finite = state.divergence.observe(grad_norm)  # on the device: no host sync
        optimizer_step(state.optimizer, state.scaler, finite)  # none at all for a non-finite step
        state.scaler.update()
        state.optimizer.zero_grad(set_to_none=True)
        if state.adapt_loss_weights(self.step + 1, pred.detach(), target, total):
            weights = state.adaptive.current()
            tel.event("loss_weights", f"Adaptive loss weights now {weights}", step=self.step + 1, **weights)
        if tracked:  # the one read of the activity sums, on the step it is published and logged
            tel.set_activity(self.step + 1, state.read_activity())
        return total, grad_norm, parts

    # ---- commands -------------------------------------------------------------
    def _handle_commands(self) -> bool:
        """Run queued actions, waiting here while paused; True when training must stop now."""
        stop = self._run_actions()
        while self.paused and not stop:
            time.sleep(0.05)
            stop = self._run_actions()
        return stop

    def _run_actions(self) -> bool:
        """Rank 0's queued actions and decisions, taken by every rank; True when training must stop now."""
        state = self.setup.state
        drained = [a.to_wire() for a in self.setup.report.controller.drain()]
        actions, decisions, stop = sync_step(drained, state.decisions(), self._signal is not None,
                                             self.setup.dist)
        if not state.decides:
            state.follow(decisions)
        if any(name in CHECKPOINTING for name, _, _ in actions):
            self.setup.guard.check(self.step)
        for name, args, source in actions:
            if self._apply(Action(name, args, source)):
                return True
        if actions:  # a `validate` may have started an LR boost: every rank follows before the step
            self._share_decisions()
        if stop and self._signal is None:
            self._stop_reason = "a signal reached another rank"
        return stop

    def _share_decisions(self) -> None:
        state = self.setup.state
        decisions = broadcast_object(state.decisions(), self.setup.dist)
        if not state.decides:
            state.follow(decisions)

    def _apply(self, action: Action) -> bool:
        """Carry out one action; True when training must stop now."""
        name = action.name
        if name == TOGGLE_PAUSE:  # a key's own action
            name = CommandName.RESUME if self.paused else CommandName.PAUSE
        return self.handlers[name](action)

    def _on_stop(self, action: Action) -> bool:
        self._stop_reason = f"stop requested ({action.source})"
        return True

    def _on_validate(self, _action: Action) -> bool:
        self.validate()
        return False

    def _on_save(self, _action: Action) -> bool:
        self.save("regular")
        return False

    def _pause(self, paused: bool, action: Action) -> bool:
        """Pause (or resume): the state and an event, when it changes anything."""
        if paused != self.paused:
            self.paused, tel, word = paused, self.setup.report.telemetry, "Paused" if paused else "Resumed"
            tel.set_state("paused" if paused else "training")
            tel.event(word.lower(), f"{word} at step {self.step} ({action.source})", step=self.step)
        return False

    def _on_set(self, action: Action) -> bool:
        args, tel = action.args, self.setup.report.telemetry
        try:
            self.cfg = with_setting(self.cfg, str(args["key"]), args["value"])
        except (KeyError, ValueError) as exc:
            tel.event("error", f"set rejected: {exc}", args=args)
            return False
        self.setup.state.on_config_change(self.cfg)
        tel.event("set", f"Set {args['key']} = {args['value']!r}", key=args["key"], value=args["value"])
        return False

    def _stop(self) -> int:
        """Stop command, Q or a signal: checkpoint, then leave (0, or 128+signal)."""
        tel = self.setup.report.telemetry
        reason = self._stop_reason or f"signal {self._signal_name()}"
        tel.set_state("stopping")
        tel.event("stopping", f"Stopping at step {self.step}: {reason}", step=self.step)
        if self._signal is not None:
            self.save("emergency", sync=True)
            return 128 + self._signal
        self.save("regular", sync=True)
        return 0

    # ---- validation and checkpoints --------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        state, tel = self.setup.state, self.setup.report.telemetry
        if not self.setup.dist.is_main:
            return None
        tel.set_state("validating")
        tel.event("validation_started", f"Validating at step {self.step}", step=self.step)
        rng = capture_rng()  # validation never changes the training's random streams
        try:
            metrics, image = self.setup.validate_model(self.step, self.cfg)
        finally:
            restore_rng(rng)
            unwrap(state.model).train()
        tel.validation(self.step, metrics, image)
        improved, boosted = state.record_validation(self.step, metrics)
        tel.best_score = state.best_score
        if boosted:
            tel.event("lr_boost", f"Validation quality on a plateau: LR boost from step {self.step}",
                      step=self.step)
        tel.event("validation_finished", f"Validation at step {self.step}: quality {metrics['quality']:.2%}, "
                  f"PSNR {metrics['psnr']:.2f} dB (bilinear: {metrics['baseline_quality']:.2%}, "
                  f"{metrics['baseline_psnr']:.2f} dB)", step=self.step, **metrics)
        tel.set_state("paused" if self.paused else "training")
        if improved:
            self.save("best")
        return metrics

    def save(self, kind: str, *, sync: bool = False) -> Path | None:
        """Checkpoint the training state after `self.step` steps (rank 0)."""
        if not self.setup.dist.is_main:
            return None
        saver, path = self.setup.saver, self.setup.saver.path(self.step, kind)
        refused = self.setup.state.divergence.refuse_reason(self.setup.state)
        if refused:  # never a broken state on disk (retention could drop the good ones for it)
            self.setup.report.telemetry.event("checkpoint_refused", f"Checkpoint {path.name} NOT saved: "
                                              f"{refused}", step=self.step, path=str(path), reason=refused)
            return None
        train_loss = self.setup.report.telemetry.latest_status().get("total_loss")
        saver.save(lambda: to_checkpoint(self.setup.state, step=self.step, kind=kind, config=self.cfg,
                                         train_loss=train_loss), path, sync=sync)
        return path

    # ---- signals and shutdown -----------------------------------------------
    def _install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            first = self._signal is None
            self._signal = signum
            message = ("stopping after this step; saving an emergency checkpoint..." if first
                       else "still stopping; the checkpoint is being written, please wait")
            self.setup.report.console.info(f"\n{signal.Signals(signum).name}: {message}")

        self._old_handlers = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _signal_name(self) -> str:
        return signal.Signals(self._signal).name if self._signal else "?"

    def close(self) -> None:
        self.setup.report.telemetry.set_state("stopped")
        if self.setup.dist.enabled:  # each rank's own count: DDP ranks skip the same steps
            skipped, rollbacks = self.setup.state.divergence.totals()
            print(f"[rank {self.setup.dist.rank}] skipped {skipped} non-finite steps, {rollbacks} rollbacks",
                  flush=True)
        digest = self.setup.guard.fingerprint() if self.setup.dist.enabled else ""
        self.setup.close()
        if self.setup.dist.enabled:
            print(f"[rank {self.setup.dist.rank}] stopped at step {self.step}; replica digest {digest}", flush=True)
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)


def centre_if_single_target(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Many-to-many output [B,T,3,H,W] against one centre ground truth [B,3,H,W]: the centre frame's
    output is what is trained; against all T ground truths every frame is."""
    if pred.dim() == 5 and target.dim() == 4:
        return pred[:, pred.shape[1] // 2]
    return pred


def train(cfg: Config, opts: RunOptions) -> int:
    """Build a run and train it; the process exit code."""
    return Trainer(cfg, opts).run()
