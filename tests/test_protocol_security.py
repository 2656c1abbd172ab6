"""CURVE keys, who may bind where, and that only authorized clients get frames and replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol import (
    CommandClient,
    CommandServer,
    CommandTimeout,
    Publisher,
    SecurityConfig,
    SecurityError,
    Subscriber,
    check_bind_allowed,
    example_fields,
    generate_keys,
    requires_security,
)


@pytest.mark.parametrize(
    ("endpoint", "beyond_loopback"),
    [
        ("tcp://127.0.0.1:5555", False),
        ("tcp://127.0.0.2:5555", False),
        ("tcp://localhost:5555", False),
        ("tcp://[::1]:5555", False),
        ("ipc:///tmp/vsrpp.sock", False),
        ("inproc://trainer", False),
        ("tcp://0.0.0.0:5555", True),
        ("tcp://*:5555", True),
        ("tcp://[::]:5555", True),
        ("tcp://192.168.1.20:5555", True),
        ("tcp://eth0:5555", True),
        ("ws://127.0.0.1:5555", True),
    ],
)
def test_requires_security_when_binding_beyond_loopback(endpoint: str, beyond_loopback: bool) -> None:
    assert requires_security(endpoint) is beyond_loopback


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    generate_keys(folder)
    return folder


def test_binding_everywhere_without_keys_is_refused_with_what_to_do(keys: Path) -> None:
    with pytest.raises(SecurityError, match=r"binding tcp://0\.0\.0\.0:5555 beyond loopback .*"
                                            r"--keys DIR .*python -m protocol keys DIR.* --insecure"):
        check_bind_allowed("tcp://0.0.0.0:5555", None, insecure=False)
    check_bind_allowed("tcp://0.0.0.0:5555", None, insecure=True)
    check_bind_allowed("tcp://0.0.0.0:5555", SecurityConfig.from_keys_dir(keys), insecure=False)
    check_bind_allowed("tcp://127.0.0.1:5555", None, insecure=False)


def test_generated_keys_are_never_overwritten(keys: Path) -> None:
    before = (keys / "server.key_secret").read_bytes()
    with pytest.raises(SecurityError, match="already holds server.key"):
        generate_keys(keys)
    assert (keys / "server.key_secret").read_bytes() == before
    assert (keys / "client.key_secret").stat().st_mode & 0o077 == 0


def test_loading_keys_says_what_is_missing(tmp_path: Path, keys: Path) -> None:
    with pytest.raises(SecurityError, match="does not exist"):
        SecurityConfig.from_keys_dir(tmp_path / "nope")
    with pytest.raises(SecurityError, match="missing key file .*server.key_secret"):
        SecurityConfig.from_keys_dir(tmp_path, "server")
    with pytest.raises(SecurityError, match="role must be"):
        SecurityConfig.from_keys_dir(keys, "admin")


def outsider_keys(keys: Path, tmp_path: Path) -> SecurityConfig:
    """A client pair the server never authorized, though it knows the server's public key."""
    generate_keys(tmp_path)
    (tmp_path / "server.key").write_bytes((keys / "server.key").read_bytes())
    return SecurityConfig.from_keys_dir(tmp_path, "client")


def receives_anything(pub: Publisher, sub: Subscriber, tries: int) -> bool:
    for _ in range(tries):
        pub.publish("heartbeat", **example_fields("heartbeat"))
        if sub.recv(20) is not None:
            return True
    return False


def test_only_clients_with_authorized_keys_get_frames(keys: Path, tmp_path: Path) -> None:
    server = SecurityConfig.from_keys_dir(keys, "server")
    with Publisher("tcp://127.0.0.1:*", "r", security=server) as pub:
        with Subscriber(pub.endpoint, security=SecurityConfig.from_keys_dir(keys, "client")) as ok:
            assert receives_anything(pub, ok, tries=200)
        with Subscriber(pub.endpoint) as plain:
            assert not receives_anything(pub, plain, tries=15)
        with Subscriber(pub.endpoint, security=outsider_keys(keys, tmp_path)) as outsider:
            assert not receives_anything(pub, outsider, tries=15)


def test_only_clients_with_authorized_keys_get_replies(keys: Path, tmp_path: Path) -> None:
    server = SecurityConfig.from_keys_dir(keys, "server")
    with CommandServer("tcp://127.0.0.1:*", queries={}, security=server) as srv:
        client = SecurityConfig.from_keys_dir(keys, "client")
        with CommandClient(srv.endpoint, timeout_ms=3000, security=client) as good:
            assert good.request("ping")["ok"] is True
        for security in (None, outsider_keys(keys, tmp_path)):
            with CommandClient(srv.endpoint, timeout_ms=300, retries=0, security=security) as bad:
                with pytest.raises(CommandTimeout):
                    bad.request("ping")
