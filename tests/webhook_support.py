"""A real webhook receiver on 127.0.0.1 for the alert tests and benchmark: it records every POST and
answers with the statuses it is told (then 200), or never answers at all."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """`Receiver(answers=[500, 500])` answers 500 twice, then 200; `Receiver(hang=True)` never answers.
    `posts`: (arrival time.time(), path, JSON body) of every request, the unanswered ones too."""

    def __init__(self, answers: list[int] | None = None, *, hang: bool = False, path: str = "/hook") -> None:
        self.answers = list(answers or [])
        self.hang = hang
        self.path = path
        self.posts: list[tuple[float, str, Any]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- the http.server name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.posts.append((time.time(), self.path, json.loads(body or b"null")))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                if receiver.hang:
                    receiver._release.wait()
                    return
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def kinds(self) -> list[str]:
        with self._lock:
            return [body.get("kind") for _, _, body in self.posts if isinstance(body, dict)]

    def bodies(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [b for _, _, b in self.posts if isinstance(b, dict) and kind in (None, b.get("kind"))]
