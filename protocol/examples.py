"""One valid example of each topic's fields (without the envelope), for docs, tests, demos and
benchmarks: `Publisher.publish(topic, **example_fields(topic))` always passes validation."""

from __future__ import annotations

import copy
import time
from typing import Any

_EXAMPLES: dict[str, dict[str, Any]] = {
    "status": {
        "iteration": 12345,
        "total_loss": 0.0123,
        "learn_rate": 0.00015,
        "time_remaining": "02:34:56",
        "iter_speed": 0.42,
        "gpu_memory": 7.8,
        "best_score": 0.85,
        "is_validating": False,
        "is_training": True,
        "timestamp": 1707159550.123,
        "is_paused": False,
        "max_iterations": 100000,
        "epoch": 3,
        "state": "training",
        "grad_norm": 0.71,
        "losses": {"l1": 0.0101, "perceptual": 0.0022},
        "loss_min": 0.0119,
        "loss_max": 0.0131,
    },
    "event": {"kind": "checkpoint_saved", "message": "saved checkpoint_step_0012000.pth",
              "data": {"step": 12000, "path": "runs/default/checkpoint_step_0012000.pth"}},
    "heartbeat": {"state": "training", "iteration": 12345, "run_dir": "/home/me/runs/default"},
    "validation": {
        "iteration": 12000,
        "psnr": 28.4,
        "ssim": 0.861,
        "quality": 0.79,
        "baseline_psnr": 26.1,
        "baseline_ssim": 0.802,
        "baseline_quality": 0.71,
        "improvement": 0.08,  # quality - baseline_quality
        "image": None,
        "image_format": "png",
    },
}


def example_fields(topic: str) -> dict[str, Any]:
    """A fresh copy of a valid field set for `topic` ('status' gets the current timestamp)."""
    fields = copy.deepcopy(_EXAMPLES[topic])
    if topic == "status":
        fields["timestamp"] = time.time()
    return fields
