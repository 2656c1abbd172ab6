"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# a monitor a test starts without --db (the trainer's local one, say) keeps its runs here, never in ~/.local
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="vsrpp-test-data-")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two OpenMP threads on a busy 2-core machine spin-wait badly; the test models are tiny."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
