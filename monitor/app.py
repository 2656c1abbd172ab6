"""The Starlette application: routes, WebSocket push, start/stop of the trainer links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol import SecurityConfig

from . import api
from .alerting import Alerts
from .bridge import Bridge
from .config import MonitorConfig
from .hub import Hub, dumps
from .link import TrainerLink
from .recorder import Recorder
from .security import SecurityHeaders, same_origin
from .state import MonitorState
from .store import Store

STATIC = Path(__file__).parent / "static"


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


async def live(websocket: WebSocket) -> None:
    """Snapshot on connect, then every message from the hub, until either side leaves."""
    if not same_origin(websocket):
        await websocket.close(code=1008)
        return
    monitor: api.Monitor = websocket.app.state.monitor
    await websocket.accept()
    queue = monitor.hub.subscribe()
    try:
        await websocket.send_text(dumps(monitor.state.snapshot()))
        sender = asyncio.ensure_future(_forward(websocket, queue))
        receiver = asyncio.ensure_future(_drain(websocket))
        _, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        monitor.hub.unsubscribe(queue)


async def _forward(websocket: WebSocket, queue: asyncio.Queue) -> None:
    while (text := await queue.get()) is not None:
        await websocket.send_text(text)
    await websocket.close()


async def _drain(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


def build_monitor(config: MonitorConfig, state: MonitorState | None = None) -> api.Monitor:
    security = SecurityConfig.from_keys_dir(config.keys, role="client") if config.keys else None
    links = [
        TrainerLink(t, security=security, timeout_ms=config.command_timeout_ms)
        for t in config.trainers
    ]
    state = state or MonitorState(offline_after=config.offline_after_s, recent=config.history_recent)
    hub = Hub()
    store = Store(config.db, owner={"port": config.port})  # StoreBusy when another monitor holds the file
    alerts = Alerts(config.alerts, store)
    return api.Monitor(config, state, hub, Bridge(state, hub, links, Recorder(store), alerts=alerts), store)


def create_app(config: MonitorConfig | None = None, state: MonitorState | None = None) -> Starlette:
    monitor = build_monitor(config or MonitorConfig(), state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await monitor.bridge.start()
        try:
            yield
        finally:
            await monitor.bridge.stop()
            await asyncio.to_thread(monitor.store.close)

    routes = [
        Route("/", index),
        Route("/api/status", api.status),
        Route("/api/action", api.action, methods=["POST"]),
        Route("/api/history.json", api.history_json),
        Route("/api/history.csv", api.history_csv),
        Route("/api/checkpoints", api.checkpoints),
        Route("/api/runs", api.runs),
        Route("/api/events", api.events),
        Route("/api/alerts", api.alerts),
        Route("/api/validation", api.validation),
        Route("/api/validation.png", api.validation_image),
        Route("/metrics", api.prometheus),
        Route("/healthz", api.healthz),
        WebSocketRoute("/ws", live),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], lifespan=lifespan)
    app.state.monitor = monitor
    return app
