"""Malformed PUB frames and REP requests, by kind, each with the words its rejection must contain.

Every generator takes a `random.Random` and returns the frames of one message.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable

import msgpack

from protocol import MAX_FRAME_BYTES, example_fields

Frames = list[bytes]
Maker = Callable[[random.Random], Frames]


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def envelope(rng: random.Random, **fields: object) -> dict:
    return {"v": 1, "run": "garbage", "seq": rng.randrange(1, 2**31), "ts": 1.0, **fields}


def nested(depth: int) -> dict:
    obj: dict = {"leaf": 1}
    for _ in range(depth):
        obj = {"x": obj}
    return obj


def _status(rng: random.Random, **changes: object) -> dict:
    fields = {**envelope(rng), **example_fields("status"), **changes}
    return {k: v for k, v in fields.items() if v is not _DROP}


_DROP = object()

# kind -> (maker, a phrase every rejection reason of that kind contains)
FRAME_KINDS: dict[str, tuple[Maker, str]] = {
    "random bytes": (lambda r: [b"status", b"\xc1" + r.randbytes(r.randrange(0, 200))], "not valid msgpack"),
    "pickle": (lambda r: [b"status", pickle.dumps({"v": 1, "run": "x"})], "not valid msgpack"),
    "not a map": (lambda r: [b"status", pack(r.choice([[1, 2], 7, None, "s", 1.5]))], "must be a map"),
    "wrong types": (lambda r: [b"status", pack(_status(r, iteration=r.choice(["7", 1.5, None, [1]])))],
                    "field 'iteration' must be int"),
    "missing fields": (lambda r: [b"status", pack(_status(r, **{r.choice(["run", "seq", "ts"]): _DROP}))],
                       "is missing"),
    "unknown version": (lambda r: [b"status", pack(_status(r, v=r.choice([0, 2, 99, "1", True])))],
                        "unsupported protocol version"),
    "huge frame": (lambda r: [b"status", b"\x00" * (MAX_FRAME_BYTES + r.randrange(1, 4096))], "the limit is"),
    "huge map": (lambda r: [b"event", pack({**envelope(r), **{f"k{i}": i for i in range(10_001)}})],
                 "not valid msgpack"),
    "deep nesting": (lambda r: [b"event", pack({**envelope(r), "data": nested(r.randrange(9, 500))})],
                     "nested deeper"),
    "frame count": (lambda r: [b"status"] * r.choice([1, 3, 4]), "a message has 2 frames"),
    "bad topic": (lambda r: [r.choice([b"\xff\xfe", b"a b", b"x" * 65]), pack(envelope(r))], "topic"),
}

# How many of each kind in a batch of 10,000 frames (the huge ones are few: 2 MiB each).
FRAME_MIX = {"random bytes": 1900, "pickle": 500, "not a map": 1000, "wrong types": 1500,
             "missing fields": 1500, "unknown version": 1500, "huge frame": 20, "huge map": 80,
             "deep nesting": 500, "frame count": 1000, "bad topic": 500}


def _unknown_command(r: random.Random) -> Frames:
    return [pack({"v": 1, "command": f"launch_{r.randrange(10**6)}"})]


REQUEST_KINDS: dict[str, tuple[Maker, str]] = {
    "random bytes": (lambda r: [b"\xc1" + r.randbytes(r.randrange(0, 100))], "not valid msgpack"),
    "empty": (lambda r: [b""], "is empty"),
    "pickle": (lambda r: [pickle.dumps({"v": 1, "command": "stop"})], "not valid msgpack"),
    "not a map": (lambda r: [pack(r.choice([["stop"], 1, None, "stop"]))], "must be a map"),
    "missing command": (lambda r: [pack({"v": 1, "args": {}})], "'command' is missing"),
    "wrong version": (lambda r: [pack({"v": r.choice([0, 2, "1"]), "command": "stop"})],
                      "unsupported protocol version"),
    "args not a map": (lambda r: [pack({"v": 1, "command": "save", "args": [1, 2]})], "must be"),
    "unknown command": (_unknown_command, "unknown command"),
    "set without value": (lambda r: [pack({"v": 1, "command": "set", "args": {"key": "x"}})],
                          "'value' is missing"),
    "set not settable": (lambda r: [pack({"v": 1, "command": "set",
                                          "args": {"key": "model.n_feats", "value": 8}})], "cannot be set"),
    "frame count": (lambda r: [pack({"v": 1, "command": "stop"})] * r.choice([2, 3]),
                    "one msgpack frame"),
    "deep nesting": (lambda r: [pack({"v": 1, "command": "ping", "args": nested(20)})], "nested deeper"),
    "huge frame": (lambda r: [b"\x80" + b"\x00" * (MAX_FRAME_BYTES + 1)], "the limit is"),
}


def mixed(kinds: dict[str, tuple[Maker, str]], mix: dict[str, int], seed: int):
    """(kind, frames) in a shuffled order, `mix[kind]` of each kind."""
    rng = random.Random(seed)
    order = [kind for kind, count in mix.items() for _ in range(count)]
    rng.shuffle(order)
    for kind in order:
        yield kind, kinds[kind][0](rng)
