"""The replica guard: under DDP every rank must hold the same model and optimizer state.

DDP averages gradients but never re-syncs weights after the start, so any difference in the
update rule (a decision only one rank took) makes the replicas drift apart silently. Every
`every` steps and before every save, each rank computes a digest of its weights, buffers and
optimizer state (`checkpoint.state_tensors`; per tensor: the L1 and L2 norms in float64, on the device), the ranks
all-gather the digests and compare them exactly; a mismatch raises `ReplicaMismatch`, naming
the ranks that differ from rank 0 and the first tensor where they do.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist

from trainer.train.checkpoint import state_tensors, training_parts
from trainer.train.distributed import DistInfo
from trainer.train.snapshot import unwrap
from trainer.train.state import TrainingState

# Test hook, read here only: "RANK:STEP" perturbs that rank's weights after that step.
PERTURB_ENV = "VSRPP_TEST_PERTURB_REPLICA"


class ReplicaMismatch(RuntimeError):
    """The ranks' models or optimizer states differ: training on would train different models."""


def digest(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """[len(tensors), 2] float64 on `device`: each tensor's L1 and L2 norm, summed in float64."""
    values = [t.detach() if t.is_floating_point() else t.detach().double() for t in tensors]  # e.g. int buffers
    rows = [torch.stack((torch.linalg.vector_norm(t, 1, dtype=torch.float64),
                         torch.linalg.vector_norm(t, 2, dtype=torch.float64))).to(device)
            for t in values]
    return torch.stack(rows)


def fingerprint(rows: torch.Tensor) -> str:
    """A short text form of a digest, for logs and tests."""
    return hashlib.sha256(rows.cpu().numpy().tobytes()).hexdigest()[:16]


class ReplicaGuard:
    """Compares the ranks' training state every `every` steps (0: only before saves)."""

    def __init__(self, state: TrainingState, info: DistInfo, every: int) -> None:
        self.state, self.info, self.every = state, info, every
        rank, _, step = os.environ.get(PERTURB_ENV, "").partition(":")
        self._perturb = (int(rank), int(step)) if step else None

    def after_step(self, step: int, *, check_now: bool = False) -> None:
        """Called by the loop after every step: the test hook, then the check when due or asked for."""
        if self._perturb == (self.info.rank, step):
            with torch.no_grad():
                next(unwrap(self.state.model).parameters()).add_(1e-3)
        if check_now or (self.every and step % self.every == 0):
            self.check(step)

    def check(self, step: int) -> None:
        """ReplicaMismatch unless every rank holds the same parameters and optimizer state."""
        if not self.info.enabled:
            return
        names, tensors = zip(*state_tensors(training_parts(self.state)), strict=True)
        mine = digest(list(tensors), self.state.device)
        gathered = [torch.empty_like(mine) for _ in range(self.info.world_size)]
        dist.all_gather(gathered, mine)
        differ = [r for r, rows in enumerate(gathered) if not torch.equal(rows, gathered[0])]
        if differ:
            first = int((gathered[differ[0]] != gathered[0]).any(dim=1).nonzero()[0])
            raise ReplicaMismatch(
                f"replicas differ at step {step}: rank(s) {', '.join(map(str, differ))} hold other weights or "
                f"optimizer state than rank 0, first in {names[first]}; digests "
                + ", ".join(f"rank {r} {fingerprint(rows)}" for r, rows in enumerate(gathered)))

    def fingerprint(self) -> str:
        """This rank's digest in short text form."""
        return fingerprint(digest([t for _, t in state_tensors(training_parts(self.state))], self.state.device))
