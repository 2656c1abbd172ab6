"""HTTP handlers. Reads never change anything; the one state-changing route is POST /api/action."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from protocol import HISTORY_FIELDS, SIMPLE_ACTIONS, CommandName, json_safe
from protocol.schemas import HISTORY_POINTS

from . import metrics
from .alerts import alert_event
from .bridge import Bridge
from .config import MonitorConfig
from .hub import Hub
from .link import BadReply, TrainerUnavailable
from .recorder import runs_listing
from .run import RunState
from .security import BodyTooLarge, is_json, read_body, same_origin, token_ok
from .state import MonitorState
from .store import Store

CSV_POINTS = 100_000  # /api/history.csv: the whole run in at most this many points (each with its extremes)
ACTIONS = SIMPLE_ACTIONS  # the dashboard's buttons: actions without arguments
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Monitor:
    """Everything a handler needs, kept on `app.state.monitor`."""

    config: MonitorConfig
    state: MonitorState
    hub: Hub
    bridge: Bridge
    store: Store


def monitor_of(request: Request) -> Monitor:
    return request.app.state.monitor


def fail(status: int, error: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error}, status_code=status)


async def status(request: Request) -> JSONResponse:
    return JSONResponse(monitor_of(request).state.status(request.query_params.get("run")))


async def action(request: Request) -> JSONResponse:
    m = monitor_of(request)
    if not token_ok(request, m.config.token):
        return fail(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' or 'X-Token'")
    if not same_origin(request):
        return fail(403, "cross-origin request refused: Origin does not match Host")
    if not is_json(request):
        return fail(415, "send the action as JSON with 'Content-Type: application/json'")
    try:
        body = json.loads(await read_body(request, m.config.max_body_bytes))
    except BodyTooLarge as exc:
        return fail(413, str(exc))
    except (ValueError, UnicodeDecodeError) as exc:
        return fail(400, f"body is not valid JSON: {exc}")
    command = body.get("command") if isinstance(body, dict) else None
    if command not in ACTIONS:
        return fail(400, f"unknown command {command!r}; expected a JSON object "
                         f"{{\"command\": ...}} with one of: {', '.join(ACTIONS)}")
    run = body.get("run") if isinstance(body.get("run"), str) else request.query_params.get("run")
    try:
        reply = await m.bridge.command(run, command)
    except TrainerUnavailable as exc:
        return fail(503, str(exc))
    except BadReply as exc:
        return fail(502, str(exc))
    if not reply.get("ok"):
        return fail(409, f"trainer refused {command!r}: {reply.get('error', 'no reason given')}")
    extra = {k: v for k, v in reply.items() if k not in ("v", "ok")}
    return JSONResponse({"ok": True, "command": command, **extra})


@dataclass
class Target:
    """The run a per-run request is about: its id and name, and its live state when the monitor follows it."""

    id: str
    name: str
    live: RunState | None


def per_run(handler: Callable[[Request, Target], Awaitable[Response]]) -> Endpoint:
    """Resolve ?run= (an id or a display name; default: the current run), live or stored, or answer 404."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        m, asked = monitor_of(request), request.query_params.get("run")
        run = m.state.run(asked)
        if run is not None:
            target = Target(run.name, run.display, run)
        else:
            row = await asyncio.to_thread(m.store.run, asked) if asked else await asyncio.to_thread(m.store.newest_run)
            if row is None:
                return fail(404, "no such run: the monitor has neither stored it nor heard from it")
            target = Target(row["id"], row["name"], None)
        try:
            return await handler(request, target)
        except BadQuery as exc:
            return fail(400, str(exc))

    return endpoint


class BadQuery(ValueError):
    """A query parameter a per-run endpoint cannot take: `per_run` answers 400 with its one-line reason."""


def int_param(request: Request, key: str, default: int | None) -> int | None:
    """?key=N as an int (BadQuery when it is not one)."""
    text = request.query_params.get(key)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise BadQuery(f"?{key}= must be an integer, got {text!r}") from None


@per_run
async def history_json(request: Request, run: Target) -> JSONResponse:
    """The run's history from the store, the same shape as the trainer's `history` reply."""
    points = int_param(request, "points", HISTORY_POINTS) or HISTORY_POINTS
    first, last = int_param(request, "from", None), int_param(request, "to", None)
    body = await asyncio.to_thread(monitor_of(request).store.history, run.id, points, first, last)
    return JSONResponse({"run": run.name, "run_id": run.id, **body})


@per_run
async def history_csv(request: Request, run: Target) -> Response:
    body = await asyncio.to_thread(monitor_of(request).store.history, run.id, CSV_POINTS)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(body["history"])
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", run.name)[:80] or "run"
    headers = {"content-disposition": f'attachment; filename="{filename}-history.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


async def checkpoints(request: Request) -> JSONResponse:
    m = monitor_of(request)
    name = request.query_params.get("run")
    run = m.state.run(name)
    try:
        reply = await m.bridge.command(name, CommandName.CHECKPOINTS)
    except (TrainerUnavailable, BadReply) as exc:
        if run is None or run.checkpoints is None:
            return fail(503, str(exc))
        return JSONResponse({"run": run.name, "checkpoints": run.checkpoints, "cached": True})
    if not reply.get("ok") or not isinstance(reply.get("checkpoints"), list):
        return fail(502, f"trainer could not list checkpoints: {reply.get('error', 'bad reply')}")
    if run is None:
        return JSONResponse({"run": None, "checkpoints": json_safe(reply["checkpoints"]), "cached": False})
    m.bridge.adopt(run.name, CommandName.CHECKPOINTS, reply)
    return JSONResponse({"run": run.name, "checkpoints": run.checkpoints, "cached": False})


async def runs(request: Request) -> JSONResponse:
    """Every run, stored or live, newest first (GET /api/runs)."""
    m = monitor_of(request)
    listing = runs_listing(await asyncio.to_thread(m.store.runs), m.state)  # the state is the loop's only
    return JSONResponse({"current": m.state.current, "runs": listing})


@per_run
async def events(request: Request, run: Target) -> JSONResponse:
    if run.live is not None:
        return JSONResponse({"run": run.id, "events": list(run.live.events)})
    store = monitor_of(request).store
    events, alerts = await asyncio.to_thread(lambda: (store.events(run.id), store.alerts(run.id)))
    merged = sorted(events + [alert_event(a) for a in alerts], key=lambda e: e.get("ts") or 0.0)  # stable
    return JSONResponse({"run": run.id, "events": merged})


@per_run
async def alerts(request: Request, run: Target) -> JSONResponse:
    """The run's alerts with their delivery state (GET /api/alerts?run=ID)."""
    rows = await asyncio.to_thread(monitor_of(request).store.alerts, run.id)
    return JSONResponse({"run": run.id, "alerts": rows})


@per_run
async def validation(request: Request, run: Target) -> JSONResponse:
    """A validation's metrics: ?iteration=I from the store, else the latest (live, else stored)."""
    iteration = int_param(request, "iteration", None)
    if iteration is None and run.live is not None and run.live.validation is not None:
        return JSONResponse({"run": run.name, "run_id": run.id, **run.live.validation})
    found = await asyncio.to_thread(monitor_of(request).store.validation, run.id, iteration)
    if found is None:
        return fail(404, f"run {run.name!r} has no validation{'' if iteration is None else f' at {iteration}'}")
    return JSONResponse({"run": run.name, "run_id": run.id, **found})


@per_run
async def validation_image(request: Request, run: Target) -> Response:
    """A validation's comparison image: ?iteration=I from the store, else the latest (live, else stored)."""
    iteration = int_param(request, "iteration", None)
    if iteration is None and run.live is not None and run.live.image is not None:
        return Response(run.live.image, media_type=run.live.image_type, headers={"cache-control": "no-store"})
    found = await asyncio.to_thread(monitor_of(request).store.image, run.id, iteration)
    if found is None:
        return fail(404, f"run {run.name!r} has no comparison image kept"
                         f"{'' if iteration is None else f' for iteration {iteration}'}")
    return Response(found[0], media_type=found[1], headers={"cache-control": "no-store"})


async def prometheus(request: Request) -> PlainTextResponse:
    m = monitor_of(request)
    return PlainTextResponse(metrics.render(m.state, len(m.hub)), media_type=metrics.CONTENT_TYPE)


async def healthz(request: Request) -> JSONResponse:
    m = monitor_of(request)
    return JSONResponse({**m.state.health(), "ws_clients": len(m.hub),
                         "trainers": list(m.bridge.links), "store": {"path": m.store.path, "error": m.store.error}})
