"""HTTP handlers. Reads never change anything; the one state-changing route is POST /api/action."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from protocol import HISTORY_FIELDS, SIMPLE_ACTIONS, json_safe

from . import metrics
from .bridge import Bridge
from .config import MonitorConfig
from .hub import Hub
from .link import BadReply, TrainerUnavailable
from .run import RunState
from .security import BodyTooLarge, is_json, read_body, same_origin, token_ok
from .state import MonitorState

ACTIONS = SIMPLE_ACTIONS  # the dashboard's buttons: actions without arguments
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Monitor:
    """Everything a handler needs, kept on `app.state.monitor`."""

    config: MonitorConfig
    state: MonitorState
    hub: Hub
    bridge: Bridge


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


def per_run(handler: Callable[[Request, RunState], Awaitable[Response]]) -> Endpoint:
    """Resolve ?run= (default: the current run) or answer 404."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        run = monitor_of(request).state.run(request.query_params.get("run"))
        if run is None:
            return fail(404, "no such run (yet): no frame from it has arrived")
        return await handler(request, run)

    return endpoint


@per_run
async def history_json(request: Request, run: RunState) -> JSONResponse:
    return JSONResponse({"run": run.name, "history": run.history.points(),
                         "validations": run.validations.points()})


@per_run
async def history_csv(request: Request, run: RunState) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(run.history.points())
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", run.name)[:80] or "run"
    headers = {"content-disposition": f'attachment; filename="{filename}-history.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


async def checkpoints(request: Request) -> JSONResponse:
    m = monitor_of(request)
    name = request.query_params.get("run")
    run = m.state.run(name)
    try:
        reply = await m.bridge.command(name, "checkpoints")
    except (TrainerUnavailable, BadReply) as exc:
        if run is None or run.checkpoints is None:
            return fail(503, str(exc))
        return JSONResponse({"run": run.name, "checkpoints": run.checkpoints, "cached": True})
    if not reply.get("ok") or not isinstance(reply.get("checkpoints"), list):
        return fail(502, f"trainer could not list checkpoints: {reply.get('error', 'bad reply')}")
    if run is None:
        return JSONResponse({"run": None, "checkpoints": json_safe(reply["checkpoints"]), "cached": False})
    m.bridge.adopt(run.name, "checkpoints", reply)
    return JSONResponse({"run": run.name, "checkpoints": run.checkpoints, "cached": False})


async def runs(request: Request) -> JSONResponse:
    state = monitor_of(request).state
    return JSONResponse({"current": state.current, "runs": state.runs_summary()})


@per_run
async def events(request: Request, run: RunState) -> JSONResponse:
    return JSONResponse({"run": run.name, "events": list(run.events)})


@per_run
async def validation(request: Request, run: RunState) -> JSONResponse:
    if run.validation is None:
        return fail(404, f"run {run.name!r} has not validated yet")
    return JSONResponse({"run": run.name, **run.validation})


@per_run
async def validation_image(request: Request, run: RunState) -> Response:
    if run.image is None:
        return fail(404, f"run {run.name!r} has sent no comparison image yet")
    return Response(run.image, media_type=run.image_type, headers={"cache-control": "no-store"})


async def prometheus(request: Request) -> PlainTextResponse:
    m = monitor_of(request)
    return PlainTextResponse(metrics.render(m.state, len(m.hub)), media_type=metrics.CONTENT_TYPE)


async def healthz(request: Request) -> JSONResponse:
    m = monitor_of(request)
    return JSONResponse({**m.state.health(), "ws_clients": len(m.hub),
                         "trainers": list(m.bridge.links)})
