"""The monitor's HTTP API under bad input: clear 4xx answers, and a property-based fuzz (random
methods, paths, bodies, headers) that never gets a 5xx nor a state change without the token."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import protocol
from monitor import MonitorConfig, TrainerEndpoints, create_app
from tests.faults.procs import free_endpoint
from tests.faults.record import record

TOKEN = "fault-suite-token"
BEARER = {"authorization": f"Bearer {TOKEN}"}
ROUTES = ["/", "/api/status", "/api/action", "/api/history.json", "/api/history.csv", "/api/checkpoints",
          "/api/runs", "/api/events", "/api/validation", "/api/validation.png", "/metrics", "/healthz",
          "/ws", "/static/app.js", "/static/../../etc/passwd", "/api/action/", "/API/ACTION"]
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
COMMANDS = st.sampled_from(["validate", "pause", "resume", "save", "stop", "set", "", "STOP", "checkpoints"])


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[TestClient, protocol.CommandServer]]:
    """A monitor bound beyond loopback with a token, in front of a command server that records actions."""
    server = protocol.CommandServer(free_endpoint(), queries={
        "checkpoints": lambda _a: {"checkpoints": []}, "history": lambda _a: {"history": []}}).start()
    config = MonitorConfig(trainers=[TrainerEndpoints(free_endpoint(), server.endpoint)], host="0.0.0.0",
                           token=TOKEN, command_timeout_ms=2000)
    try:
        with TestClient(create_app(config), base_url="http://testserver") as client:
            yield client, server
    finally:
        server.close()


def post(client: TestClient, body: bytes, headers: dict[str, str]):
    return client.post("/api/action", content=body, headers={"content-type": "application/json", **headers})


def test_bad_requests_get_clear_4xx_answers_and_only_a_tokened_action_gets_through(guarded) -> None:
    client, server = guarded
    cases = {
        "no token": (post(client, b'{"command": "stop"}', {}), 401, "token"),
        "wrong token": (post(client, b'{"command": "stop"}', {"authorization": "Bearer nope"}), 401, "token"),
        "wrong x-token": (post(client, b'{"command": "stop"}', {"x-token": TOKEN[:-1]}), 401, "token"),
        "bad JSON": (post(client, b'{"command": ', BEARER), 400, "not valid JSON"),
        "huge body": (post(client, b'{"command": "' + b"x" * 2**20 + b'"}', BEARER), 413, "limit"),
        "unknown command": (post(client, b'{"command": "rm -rf"}', BEARER), 400, "unknown command"),
        "not an object": (post(client, b'["stop"]', BEARER), 400, "unknown command"),
        "not JSON type": (client.post("/api/action", content=b"stop", headers={**BEARER, "content-type":
                                                                               "text/plain"}), 415, "JSON"),
        "cross origin": (post(client, b'{"command": "stop"}', {**BEARER, "origin": "http://evil.example"}),
                         403, "cross-origin"),
    }
    for name, (response, code, says) in cases.items():
        assert response.status_code == code and says in response.json()["error"], (name, response.text)
    assert client.get("/api/action").status_code == 405
    assert server.drain() == [], "nothing reached the trainer"
    ok = post(client, b'{"command": "pause"}', BEARER)
    assert ok.status_code == 200 and ok.json()["ok"]
    assert [c.name for c in server.drain()] == ["pause"]
    record("bad HTTP requests (no/wrong token, bad JSON, 1 MiB body, unknown command, wrong type, "
           "cross origin, GET on the action)", len(cases) + 1, "each a 4xx that says why; none reached the trainer")


def bodies() -> st.SearchStrategy[bytes]:
    commands = st.fixed_dictionaries({"command": COMMANDS}, optional={"run": st.text(max_size=10)})
    return st.one_of(st.binary(max_size=300), commands.map(lambda d: json.dumps(d).encode()), st.just(b""))


def headers() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={
        "content-type": st.one_of(st.sampled_from(["application/json", "text/plain", "application/json; x=1"]),
                                  HEADER_TEXT),
        "authorization": HEADER_TEXT.map(lambda t: "Bearer " + t) | HEADER_TEXT,
        "x-token": HEADER_TEXT,
        "origin": st.sampled_from(["http://evil.example", "null", "http://testserver"]) | HEADER_TEXT,
        "accept": HEADER_TEXT,
    })


def fuzz(client: TestClient, server: protocol.CommandServer, examples: int) -> dict[str, int]:
    """Random requests: never a 5xx; an action reaches the trainer only with the token and only as
    the command the 200 answer names. Returns how many ran with and without the token."""
    tried = {"without token": 0, "with token": 0}
    paths = st.sampled_from(ROUTES) | st.text("abcxyz/._-%~", max_size=30).map(lambda t: "/" + t.lstrip("/"))
    query = st.dictionaries(st.sampled_from(["run", "token", "limit", "command"]), HEADER_TEXT, max_size=2)
    methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(method=methods, path=paths, params=query, body=bodies(), extra=headers(), tokened=st.booleans())
    def one_request(method: str, path: str, params: dict, body: bytes, extra: dict[str, str],
                    tokened: bool) -> None:
        response = client.request(method, path, params=params, content=body,
                                  headers={**extra, **(BEARER if tokened else {})})
        assert response.status_code < 500, (method, path, params, body[:80], extra, response.text[:200])
        accepted = tokened and response.status_code == 200 and path == "/api/action" and method == "POST"
        expected = [response.json()["command"]] if accepted else []
        assert [c.name for c in server.drain()] == expected, (method, path, body[:80], extra, tokened)
        tried["with token" if tokened else "without token"] += 1

    one_request()
    return tried


def test_http_fuzz_never_answers_5xx_and_only_a_tokened_post_changes_state(guarded) -> None:
    tried = fuzz(*guarded, examples=400)
    record("HTTP fuzz (hypothesis: random methods/paths/query/bodies/headers)", sum(tried.values()),
           f"never a 5xx; {tried['without token']} without the token: no action reached the trainer")


@pytest.mark.slow
def test_long_http_fuzz_never_answers_5xx_and_only_a_tokened_post_changes_state(guarded) -> None:
    tried = fuzz(*guarded, examples=5000)
    record("HTTP fuzz, long (hypothesis)", sum(tried.values()),
           f"never a 5xx; {tried['without token']} without the token: no action reached the trainer")
