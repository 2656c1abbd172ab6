"""Deterministic, resumable sample order and per-sample randomness.

`ResumableRandomSampler` is infinite: it yields `(index, epoch)` keys, epoch after epoch, so a
DataLoader never stalls at an epoch boundary. Epoch e's order is a permutation drawn from
(seed, e) alone. Because DataLoader prefetches ahead, the sampler cannot know what the loop has
used: the loop calls `advance(batch_size)` for each batch it consumed, and `state_dict()` is that
position. After `load_state_dict()` a fresh iterator continues exactly where the saved run stopped.

Datasets take the key and draw their augmentation from `sample_rng(seed, epoch, index)`, so the
result is the same in any worker process and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ResumableRandomSampler", "sample_rng", "split_key"]

SampleKey = tuple[int, int]  # (index, epoch)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


def split_key(key: int | SampleKey) -> SampleKey:
    """A dataset key is a plain index (epoch 0) or an (index, epoch) pair from the sampler."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), 0


class ResumableRandomSampler(Sampler[SampleKey]):
    def __init__(self, dataset_len: int, seed: int = 0, *, shuffle: bool = True) -> None:
        if dataset_len < 1:
            raise ValueError(f"cannot sample from an empty data set (dataset_len={dataset_len})")
        self.n, self.seed, self.shuffle = dataset_len, seed, shuffle
        self.epoch = 0
        self.position = 0  # samples of this epoch the loop has consumed

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch, 0x5A]).permutation(self.n)

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, start = self.epoch, self.position
        while True:
            for index in self.order(epoch)[start:]:
                yield int(index), epoch
            epoch, start = epoch + 1, 0

    def __len__(self) -> int:
        return self.n  # one epoch; iteration itself never ends

    def advance(self, n_samples: int) -> None:
        """Record that the loop consumed `n_samples` more samples."""
        total = self.epoch * self.n + self.position + n_samples
        self.epoch, self.position = divmod(total, self.n)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("n", self.n) != self.n:
            raise ValueError(f"sampler state is for a data set of {state['n']} samples, this one has {self.n}")
        self.seed = int(state.get("seed", self.seed))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
