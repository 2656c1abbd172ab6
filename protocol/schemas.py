"""Wire protocol v1 schemas as declarative tables: field name -> `Field`.

Every table is checked by `protocol.codec`. Fields not listed in a table are
allowed and passed through untouched (producers may extend a message); listed
optional fields are type-checked when present. docs/protocol.md renders these
tables for humans; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1
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

# The envelope every PUB payload carries.
ENVELOPE: Schema = {"v": req(INT), "run": req(STR), "seq": req(INT), "ts": req(FLOAT)}

STATUS: Schema = {
    # the seed's /api/status fields
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
    # added by the contract
    "is_paused": req(BOOL),
    "max_iterations": req(INT),
    # optional extras
    "epoch": opt(INT),
    "state": opt(STR),
    "grad_norm": opt(OPT_FLOAT),
    "losses": opt(MAP),  # loss parts, e.g. {"l1": 0.01, "perceptual": 0.002}
    "activity": opt(MAP),  # per-layer mean |output|, e.g. {"feat": 0.21, "out": 0.03}
}

EVENT: Schema = {"kind": req(STR), "message": req(STR), "data": opt(MAP)}

HEARTBEAT: Schema = {"state": req(STR), "iteration": req(INT)}

VALIDATION: Schema = {
    "iteration": req(INT),
    "psnr": req(FLOAT),
    "ssim": req(FLOAT),
    "quality": req(FLOAT),
    "baseline_psnr": req(FLOAT),
    "baseline_ssim": req(FLOAT),
    "baseline_quality": req(FLOAT),
    "improvement": opt(FLOAT),
    "image": opt(OPT_BYTES),
    "image_format": opt(STR, choices=("png", "jpeg")),
}

TOPICS: dict[str, Schema] = {
    "status": STATUS,
    "event": EVENT,
    "heartbeat": HEARTBEAT,
    "validation": VALIDATION,
}

HEARTBEAT_STATES = ("loading", "training", "validating", "paused", "stopping", "stopped")

# Requests: the envelope, then the command's `args` table.
REQUEST: Schema = {"v": req(INT), "command": req(STR, pattern=r"[a-z][a-z0-9_]{0,31}"), "args": opt(MAP)}
REPLY: Schema = {"v": req(INT), "ok": req(BOOL), "error": opt(STR)}

COMMANDS: dict[str, Schema] = {
    "ping": {},
    "status": {},
    "validate": {},
    "pause": {},
    "resume": {},
    "save": {},
    "stop": {},
    "checkpoints": {},
    "history": {"limit": opt(INT)},
    "set": {"key": req(STR), "value": req(ANY)},
}

QUERY_COMMANDS = ("ping", "status", "checkpoints", "history")
ACTION_COMMANDS = ("validate", "pause", "resume", "save", "stop", "set")
