"""Wire protocol v1's vocabulary and schemas, defined once: default endpoints, state names,
command and action names, event kinds with the schema of their `data`, the fields of each
topic, and the fields of the history and validation points a viewer keeps.

Every table is checked by `protocol.codec`. Fields not listed in a table are
allowed and passed through untouched (producers may extend a message); listed
optional fields are type-checked when present. docs/protocol.md renders these
tables for humans; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PROTOCOL_VERSION = 1
LOOPBACK = "127.0.0.1"  # where the trainer's sockets and the monitor bind unless told otherwise
DEFAULT_PUB = f"tcp://{LOOPBACK}:5555"  # the trainer's telemetry socket
DEFAULT_REP = f"tcp://{LOOPBACK}:5556"  # the trainer's command socket
MONITOR_PORT = 5050  # the monitor's HTTP port (`python -m monitor --port`, `python -m trainer --monitor-port`)
MAX_FRAME_BYTES = 2 * 1024 * 1024
MAX_TOPIC_BYTES = 64
MAX_DEPTH = 8
MAX_ARRAY_LEN = 100_000
MAX_MAP_LEN = 10_000


class Any_:
    """Marker type: any plain msgpack value (None, bool, int, float, str, bytes, list, map)."""


ANY = (Any_,)
INT = (int,)
FLOAT = (float, int)  # ints are accepted where floats are expected
STR = (str,)
BOOL = (bool,)
MAP = (dict,)
LIST = (list,)
OPT_FLOAT = (float, int, type(None))
OPT_BYTES = (bytes, type(None))
OPT_STR = (str, type(None))


@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    required: bool = True
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # regular expression a str value must match in full


def req(types: tuple[type, ...], choices: tuple[str, ...] = (), pattern: str | None = None) -> Field:
    return Field(types, True, choices, pattern)


def opt(types: tuple[type, ...], choices: tuple[str, ...] = (), pattern: str | None = None) -> Field:
    return Field(types, False, choices, pattern)


Schema = dict[str, Field]

# The envelope every PUB payload carries. `run` is the display name (run folder @ host); `run_id` is the
# run's identity (32 hex, kept in the run folder's run.json across resumes; absent from older trainers).
ENVELOPE: Schema = {"v": req(INT), "run": req(STR), "seq": req(INT), "ts": req(FLOAT),
                    "run_id": opt(STR, pattern=r"[0-9a-f]{32}")}

# What a trainer is doing: `heartbeat.state` and `status.state`.
STATES = ("loading", "training", "validating", "paused", "stopping", "stopped")

STATUS: Schema = {
    # the original /api/status fields
    "iteration": req(INT),
    "total_loss": req(FLOAT),
    "learn_rate": req(FLOAT),
    "time_remaining": req(STR, pattern=r"\d{2,}:[0-5]\d:[0-5]\d"),
    "iter_speed": req(FLOAT),
    "gpu_memory": req(FLOAT),
    "best_score": req(OPT_FLOAT),
    "is_validating": req(BOOL),
    "is_training": req(BOOL),
    "timestamp": req(FLOAT),
    # added with protocol v1
    "is_paused": req(BOOL),
    "max_iterations": req(INT),
    # optional extras
    "epoch": opt(INT),
    "state": opt(STR),  # one of STATES
    "grad_norm": opt(OPT_FLOAT),
    "losses": opt(MAP),  # loss parts, e.g. {"l1": 0.01, "perceptual": 0.002}
    "activity": opt(MAP),  # per-layer mean |output|, e.g. {"feat": 0.21, "out": 0.03}
    "skipped_steps": opt(INT),  # non-finite steps skipped this run (absent: 0)
    "rollbacks": opt(INT),  # rollbacks to the last finite state this run (absent: 0)
    "init_from": opt(STR),  # the model file this run was fine-tuned from (--init-from), by name
    "loss_min": opt(OPT_FLOAT),  # lowest loss of the steps since the last history point (this one included)
    "loss_max": opt(OPT_FLOAT),  # highest loss of those steps
}

_STEP: Schema = {"step": req(INT)}

# Event kinds a trainer sends -> the schema of the event's `data` map.
EVENTS: dict[str, Schema] = {
    "loading": {},
    "started": {**_STEP, "device": opt(STR), "world_size": opt(INT)},
    "finished": _STEP,
    "stopping": _STEP,
    "paused": _STEP,
    "resumed": _STEP,
    "set": {"key": req(STR), "value": req(ANY)},
    "error": {"step": opt(INT), "path": opt(STR), "fatal": opt(BOOL)},  # fatal: the run ends because of it
    "validation_started": _STEP,
    "validation_finished": {**_STEP, "quality": opt(FLOAT), "psnr": opt(FLOAT), "ssim": opt(FLOAT)},
    "checkpoint_saved": {**_STEP, "path": req(STR), "filename": opt(STR), "type": opt(STR),
                         "size_mb": opt(FLOAT), "removed": opt(LIST), "quality": opt(OPT_FLOAT),
                         "loss": opt(OPT_FLOAT)},
    "checkpoint_refused": {**_STEP, "path": req(STR), "reason": req(STR)},
    "loss_weights": _STEP,
    "lr_boost": _STEP,
    "nan_skipped": {**_STEP, "skipped": req(INT), "reason": req(STR)},
    "diverged": {**_STEP, "restore_step": req(INT)},
    "recovered": {**_STEP, "from_step": req(INT), "rollbacks": req(INT)},
}

EVENT: Schema = {"kind": req(STR), "message": req(STR), "data": opt(MAP)}

HEARTBEAT: Schema = {"state": req(STR), "iteration": req(INT),
                     "run_dir": opt(STR)}  # the run folder's absolute path, for a viewer on the same machine

METRIC_SPACES = ("rgb", "y")

VALIDATION: Schema = {
    "iteration": req(INT),
    "psnr": req(FLOAT),
    "ssim": req(FLOAT),
    "quality": req(FLOAT),
    "baseline_psnr": req(FLOAT),
    "baseline_ssim": req(FLOAT),
    "baseline_quality": req(FLOAT),
    "improvement": opt(FLOAT),  # quality - baseline_quality
    "metric_space": opt(STR, choices=METRIC_SPACES),  # where PSNR/SSIM were measured (absent: rgb)
    "timestamp": opt(FLOAT),  # unix seconds the validation finished (the point's time in `history`)
    "image": opt(OPT_BYTES),
    "image_format": opt(STR, choices=("png", "jpeg")),
}

TOPICS: dict[str, Schema] = {
    "status": STATUS,
    "event": EVENT,
    "heartbeat": HEARTBEAT,
    "validation": VALIDATION,
}

# The points of the `history` reply: what a viewer plots, the same live and re-fetched. A point stands for
# the steps since the previous one: the last step's values, and the extremes of them all (loss_min/loss_max).
HISTORY_FIELDS = ("iteration", "total_loss", "learn_rate", "iter_speed", "gpu_memory", "timestamp",
                  "loss_min", "loss_max")
HISTORY_POINTS = 2000  # `history`: points when a request names none
HISTORY_MAX_POINTS = 5000  # `history`: the most points one reply carries (points, limit): ~0.8 of a frame's 2 MiB
VALIDATION_POINT_FIELDS = ("iteration", "psnr", "ssim", "quality", "baseline_psnr", "baseline_ssim",
                           "baseline_quality", "improvement", "metric_space", "timestamp")

# Requests: the envelope, then the command's `args` table.
REQUEST: Schema = {"v": req(INT), "command": req(STR, pattern=r"[a-z][a-z0-9_]{0,31}"), "args": opt(MAP)}
REPLY: Schema = {"v": req(INT), "ok": req(BOOL), "error": opt(STR)}


class CommandName(StrEnum):
    """Every command's name, for the code that sends or handles one (QUERIES and ACTIONS give their args)."""

    PING = "ping"
    STATUS = "status"
    CHECKPOINTS = "checkpoints"
    HISTORY = "history"
    VALIDATE = "validate"
    PAUSE = "pause"
    RESUME = "resume"
    SAVE = "save"
    STOP = "stop"
    SET = "set"


# A query is answered at once on the command server's thread; an action is queued for the training loop.
QUERIES: dict[str, Schema] = {
    CommandName.PING: {},
    CommandName.STATUS: {},
    CommandName.CHECKPOINTS: {},
    CommandName.HISTORY: {"points": opt(INT), "from": opt(INT), "to": opt(INT), "limit": opt(INT)},
}
ACTIONS: dict[str, Schema] = {
    CommandName.VALIDATE: {},
    CommandName.PAUSE: {},
    CommandName.RESUME: {},
    CommandName.SAVE: {},
    CommandName.STOP: {},
    CommandName.SET: {"key": req(STR), "value": req(ANY)},
}
COMMANDS: dict[str, Schema] = {**QUERIES, **ACTIONS}
QUERY_COMMANDS = tuple(QUERIES)
ACTION_COMMANDS = tuple(ACTIONS)
SIMPLE_ACTIONS = tuple(name for name, args in ACTIONS.items() if not args)  # actions without args
