"""Bounded time series: the last points at full resolution, older ones thinned.

Memory is O(recent + older) however long the run: points that fall out of the
recent window go to an "older" list that keeps only every `stride`-th point;
when that list is full every other point is dropped and the stride doubles.
"""

from __future__ import annotations

from collections import deque
from typing import Any

Point = dict[str, Any]


class History:
    def __init__(self, recent: int = 2000, older: int = 2000) -> None:
        if recent < 1 or older < 2:
            raise ValueError(f"History needs recent >= 1 and older >= 2, got {recent}, {older}")
        self.recent_capacity = recent
        self.older_capacity = older
        self._recent: deque[Point] = deque()
        self._older: list[Point] = []
        self._stride = 1
        self._evicted = 0
        self.total = 0

    def append(self, point: Point) -> None:
        if len(self._recent) >= self.recent_capacity:
            self._keep_older(self._recent.popleft())
        self._recent.append(point)
        self.total += 1

    def _keep_older(self, point: Point) -> None:
        index = self._evicted
        self._evicted += 1
        if index % self._stride:
            return
        self._older.append(point)
        if len(self._older) >= self.older_capacity:
            self._older = self._older[::2]
            self._stride *= 2

    def points(self) -> list[Point]:
        """Oldest first: thinned older points, then the recent window."""
        return [*self._older, *self._recent]

    @property
    def stride(self) -> int:
        return self._stride

    def __len__(self) -> int:
        return len(self._older) + len(self._recent)
