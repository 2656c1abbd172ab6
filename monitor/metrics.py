"""Prometheus text exposition (format 0.0.4), written by hand.

A dozen gauges and counters computed from the state on each scrape; this avoids
prometheus_client's process-global registry (several apps per test process)
and a dependency for ~40 lines.
"""

from __future__ import annotations

from typing import Any

from .state import MonitorState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RUN_GAUGES = (
    ("iteration", "vsrpp_iteration", "Latest training iteration."),
    ("total_loss", "vsrpp_total_loss", "Latest total training loss."),
    ("learn_rate", "vsrpp_learn_rate", "Latest learning rate."),
    ("iter_speed", "vsrpp_iter_speed", "Iterations per second."),
    ("gpu_memory", "vsrpp_gpu_memory_gb", "GPU memory in use, GB."),
    ("best_score", "vsrpp_best_score", "Best validation quality, 0..1."),
)
RUN_COUNTERS = (
    ("skipped_steps", "vsrpp_skipped_steps_total", "Steps skipped for a non-finite loss or gradient."),
    ("rollbacks", "vsrpp_rollbacks_total", "Rollbacks to the last finite training state."),
)
VALIDATION_GAUGES = ("psnr", "ssim", "quality", "baseline_psnr", "baseline_ssim", "baseline_quality")


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> str | None:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return None


def render(state: MonitorState, ws_clients: int = 0) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, Any]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        for labels, value in samples:
            text = _number(value)
            if text is not None:
                lines.append(f"{name}{labels} {text}")

    runs = list(state.runs.values())
    label = {r.name: f'{{run="{escape_label(r.name)}"}}' for r in runs}
    family("vsrpp_monitor_frames_total", "counter", "Frames accepted.", [("", state.frames)])
    family("vsrpp_monitor_malformed_total", "counter", "Frames rejected as malformed.",
           [("", state.malformed)])
    family("vsrpp_monitor_ws_clients", "gauge", "Connected WebSocket clients.", [("", ws_clients)])
    family("vsrpp_trainer_online", "gauge", "1 while the run's trainer is heard from.",
           [(label[r.name], state.is_online(r.name)) for r in runs])
    family("vsrpp_monitor_seq_gaps_total", "counter", "Frames lost on the way (sequence gaps).",
           [(label[r.name], r.seq_gaps) for r in runs])
    for key, name, help_text in RUN_GAUGES:
        family(name, "gauge", help_text, [(label[r.name], r.status.get(key)) for r in runs])
    for key, name, help_text in RUN_COUNTERS:
        family(name, "counter", help_text, [(label[r.name], r.status.get(key, 0)) for r in runs])
    for key in VALIDATION_GAUGES:
        family(f"vsrpp_validation_{key}", "gauge", f"Latest validation {key}.",
               [(label[r.name], (r.validation or {}).get(key)) for r in runs])
    return "\n".join(lines) + "\n"
