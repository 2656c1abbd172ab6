"""Nobody gets in: CURVE on the trainer's sockets, refusal to bind beyond loopback without keys,
a monitor that wants a token beyond loopback, and no pickle anywhere on the wire or on load."""

from __future__ import annotations

import ast
import pickle
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import ckpt
import protocol
from tests.faults.procs import (
    ENV,
    TINY,
    TrainerProc,
    free_endpoint,
    free_port,
    status_at_least,
    wait_for_frame,
)
from tests.faults.record import record

ROOT = Path(__file__).resolve().parents[1]
WIRE_PACKAGES = ("protocol", "monitor")


def foreign_client(server_keys: Path, other_keys: Path) -> protocol.SecurityConfig:
    """The right server key, but a client key pair the server never authorized."""
    own = protocol.SecurityConfig.from_keys_dir(other_keys, role="client")
    right = protocol.SecurityConfig.from_keys_dir(server_keys, role="client")
    return protocol.SecurityConfig("client", own.public_key, own.secret_key, server_key=right.server_key)


def who_heard_anything(subs: dict[str, protocol.Subscriber], seconds: float) -> list[str]:
    heard: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        heard |= {name for name, sub in subs.items() if sub.recv(20) is not None}
    return sorted(heard)


def test_curve_trainer_serves_only_clients_with_authorized_keys(tmp_path):
    keys, other = tmp_path / "keys", tmp_path / "other"
    protocol.generate_keys(keys)
    protocol.generate_keys(other)
    trainer = TrainerProc(tmp_path / "run", [*TINY, "--keys", str(keys), "--max-iters", "1000000",
                                             "--save-every", "1000000", "--val-every", "1000000"]).start()
    strangers = {"no keys": None, "wrong server key": protocol.SecurityConfig.from_keys_dir(other, "client"),
                 "unauthorized client key": foreign_client(keys, other)}
    subs = {name: protocol.Subscriber(trainer.pub, security=sec) for name, sec in strangers.items()}
    friend = protocol.SecurityConfig.from_keys_dir(keys, role="client")
    good = protocol.Subscriber(trainer.pub, security=friend)
    try:
        wait_for_frame(good, status_at_least(1), 120, "frames for the authorized client")
        with protocol.CommandClient(trainer.rep, security=friend) as client:
            assert client.request("ping")["ok"]
        assert who_heard_anything(subs, 2.0) == [], "clients without the right keys got frames"
        for name in strangers:
            with protocol.CommandClient(trainer.rep, timeout_ms=1000, retries=0,
                                        security=strangers[name]) as client:
                with pytest.raises(protocol.CommandTimeout):
                    client.request("stop")
        wait_for_frame(good, status_at_least(5), 60, "training going on (no stop got through)")
        trainer.signal(signal.SIGTERM)
        assert trainer.wait(60) == 128 + signal.SIGTERM
    finally:
        for sub in [*subs.values(), good]:
            sub.close()
        trainer.kill()
    record("clients without the right CURVE keys (none, wrong server key, unauthorized key)", 3,
           "no frame and no command reply for any of them; the authorized client got both")


def test_trainer_refuses_to_bind_beyond_loopback_without_keys_before_binding_anything(tmp_path):
    held = socket.socket()
    held.bind(("127.0.0.1", free_port()))  # the PUB port is taken: binding it first would fail differently
    held.listen()
    pub = f"tcp://127.0.0.1:{held.getsockname()[1]}"
    try:
        out = subprocess.run(
            [sys.executable, "-m", "trainer", "--run-dir", str(tmp_path / "run"), "--no-monitor",
             "--pub", pub, "--rep", f"tcp://0.0.0.0:{free_port()}", *TINY],
            capture_output=True, text=True, timeout=180, env=ENV)
    finally:
        held.close()
    assert out.returncode == 2, out.stdout + out.stderr
    assert "beyond loopback without CURVE keys" in out.stderr and "--insecure" in out.stderr
    assert "Traceback" not in out.stderr and "cannot bind" not in out.stderr
    assert not ckpt.list_checkpoints(tmp_path / "run")
    record("trainer asked to bind tcp://0.0.0.0 without keys", 1,
           f"exit 2 before binding anything: {out.stderr.strip().splitlines()[-1][:110]}")


def test_monitor_refuses_to_serve_beyond_loopback_without_a_token():
    out = subprocess.run([sys.executable, "-m", "monitor", "--host", "0.0.0.0", "--port", str(free_port()),
                          "--pub", free_endpoint(), "--rep", free_endpoint()],
                         capture_output=True, text=True, timeout=60, env={**ENV, "VSRPP_MONITOR_TOKEN": ""})
    assert out.returncode == 2
    assert "without a token" in out.stderr and "--insecure" in out.stderr and "Traceback" not in out.stderr
    record("monitor asked to serve on 0.0.0.0 without a token", 1, "exit 2 with what to do")


def source_files(*packages: str) -> list[Path]:
    return [path for package in packages for path in sorted((ROOT / package).rglob("*.py"))]


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_pickle_on_the_wire_and_the_codec_refuses_pickled_frames():
    for path in source_files(*WIRE_PACKAGES):
        tree = ast.parse(path.read_text())
        assert not imported_modules(tree) & {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"}, path
        calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not calls & {"recv_pyobj", "send_pyobj"}, f"{path} uses pyzmq's pickle helpers"
    pickled = pickle.dumps({"v": 1, "command": "stop"})
    with pytest.raises(protocol.ProtocolError, match="not valid msgpack"):
        protocol.decode_request(pickled)
    with pytest.raises(protocol.ProtocolError, match="not valid msgpack"):
        protocol.decode_message([b"status", pickled])


def torch_load_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"]


def test_checkpoints_load_with_weights_only_and_a_pickled_object_needs_the_opt_in(tmp_path):
    unsafe_loads = []
    for path in source_files("trainer", "ckpt", "monitor", "protocol"):
        for call in torch_load_calls(path):
            flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
            assert isinstance(flag, ast.Constant), f"{path}:{call.lineno} torch.load without weights_only"
            if flag.value is not True:
                unsafe_loads.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert [where.split(":")[0] for where in unsafe_loads] == ["ckpt/store.py"], unsafe_loads
    path = tmp_path / ckpt.checkpoint_name(5)
    torch.save({"step": 5, "model_state_dict": {}, "hook": Fraction(1, 3)}, path)
    with pytest.raises(ckpt.UnsafeCheckpointError, match="would run code from the file") as refused:
        ckpt.load_checkpoint(path)
    assert "allow_unsafe" not in str(refused.value)  # no advice to load a foreign file unsafely
    with pytest.warns(UserWarning, match="allow_unsafe"):
        assert ckpt.load_checkpoint(path, allow_unsafe=True)["hook"] == Fraction(1, 3)
    assert ckpt.list_checkpoints(tmp_path)[0]["status"] == "unsafe"
    assert ckpt.select_checkpoint(tmp_path, "latest") is None
