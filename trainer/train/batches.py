"""The training batches: an endless, resumable stream in the sampler's order."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from trainer import data
from trainer.config import Config
from trainer.train.distributed import DistInfo, ShardedSampler


def ignore_stop_signals(_worker_id: int) -> None:
    """Data workers leave Ctrl-C / SIGTERM sent to the whole process group to the main process,
    which stops at a step boundary, saves, and then shuts the workers down itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class BatchStream:
    """Endless batches in the resumable sampler's order; `mark_step` commits what an iteration used."""

    def __init__(self, dataset: Any, cfg: Config, dist: DistInfo) -> None:
        self.sampler = data.ResumableRandomSampler(len(dataset), seed=cfg.train.seed)
        self.dataset, self.cfg, self.dist = dataset, cfg, dist
        self._iter: Iterator[Any] | None = None
        self._pending = 0

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def _loader(self) -> Iterator[Any]:
        sampler = ShardedSampler(self.sampler, self.dist) if self.dist.enabled else self.sampler
        workers = self.cfg.train.num_workers
        loader = DataLoader(self.dataset, batch_size=self.cfg.train.batch_size, sampler=sampler,
                            num_workers=workers, pin_memory=torch.cuda.is_available(),
                            persistent_workers=False, generator=torch.Generator(),
                            prefetch_factor=2 if workers else None,
                            worker_init_fn=ignore_stop_signals if workers else None)
        return iter(loader)

    def next(self) -> dict[str, Any]:
        if self._iter is None:
            self._iter = self._loader()
        self._pending += self.cfg.train.batch_size * self.dist.world_size
        return next(self._iter)

    def mark_step(self) -> None:
        self.sampler.advance(self._pending)
        self._pending = 0

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
        self.close()

    def close(self) -> None:
        """Drop the endless iterator; CPython frees it at once, which stops its worker processes."""
        self._iter, self._pending = None, 0
