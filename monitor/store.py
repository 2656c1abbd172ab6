"""Every run the monitor has met, kept in SQLite: runs, history points, validations (+ images), events.

`Store` owns every SQL statement of the monitor. Writes go through a queue to one writer thread that
batches them (`executemany`, one transaction per batch, one commit every `batch_s`, 5 s), never on
the event loop; reads use a connection of their own (WAL: readers never wait for the writer).
One monitor per file: a lock file beside it (`PATH.lock`, fcntl.flock) names the owner.
A file that is not a sound database is moved aside, never deleted. A failed write (a full disk)
stops the storing with one line on stderr; reads and the dashboard go on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

MEMORY = ":memory:"
KEEP_IMAGES = 100  # per run, beside every `_best` one
BLOCK = 64  # iterations summarised per `blocks` row: a long run's history reads these, not every point
POINT_COLUMNS = ("iteration", "total_loss", "learn_rate", "iter_speed", "gpu_memory", "timestamp",
                 "loss_min", "loss_max")
RUN_COLUMNS = ("id", "name", "host", "run_dir", "state", "iteration", "max_iterations", "best_score",
               "started", "ended", "last_seen", "init_from")

SCHEMA = [  # index i migrates user_version i -> i + 1
    """
    CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, host TEXT, run_dir TEXT, state TEXT,
        iteration INTEGER NOT NULL DEFAULT 0, max_iterations INTEGER NOT NULL DEFAULT 0, best_score REAL,
        started REAL, ended REAL, last_seen REAL, init_from TEXT);
    CREATE TABLE points (run TEXT NOT NULL, iteration INTEGER NOT NULL, total_loss REAL, learn_rate REAL,
        iter_speed REAL, gpu_memory REAL, timestamp REAL, loss_min REAL, loss_max REAL,
        PRIMARY KEY (run, iteration)) WITHOUT ROWID;
    CREATE TABLE blocks (run TEXT NOT NULL, block INTEGER NOT NULL, last_it INTEGER NOT NULL, lo REAL, hi REAL,
        PRIMARY KEY (run, block)) WITHOUT ROWID;
    CREATE TABLE validations (run TEXT NOT NULL, iteration INTEGER NOT NULL, metrics TEXT NOT NULL,
        PRIMARY KEY (run, iteration)) WITHOUT ROWID;
    CREATE TABLE images (id INTEGER PRIMARY KEY, run TEXT NOT NULL, iteration INTEGER NOT NULL,
        best INTEGER NOT NULL, type TEXT NOT NULL, data BLOB NOT NULL, UNIQUE (run, iteration));
    CREATE TABLE events (id INTEGER PRIMARY KEY, run TEXT NOT NULL, ts REAL, kind TEXT, message TEXT,
        data TEXT);
    CREATE INDEX events_by_run ON events (run, id);
    """,
    """
    CREATE TABLE alerts (id TEXT PRIMARY KEY, run TEXT NOT NULL, kind TEXT NOT NULL, title TEXT, text TEXT,
        iteration INTEGER, ts REAL, delivery TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX alerts_by_run ON alerts (run, ts);
    """,
    # points and blocks name their run by a small integer, not its 32-character id (a third of a point's bytes)
    """
    CREATE TABLE run_keys (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
    INSERT INTO run_keys (id) SELECT DISTINCT run FROM points;
    CREATE TABLE keyed_points (run INTEGER NOT NULL, iteration INTEGER NOT NULL, total_loss REAL, learn_rate REAL,
        iter_speed REAL, gpu_memory REAL, timestamp REAL, loss_min REAL, loss_max REAL,
        PRIMARY KEY (run, iteration)) WITHOUT ROWID;
    INSERT INTO keyed_points SELECT k.key, p.iteration, p.total_loss, p.learn_rate, p.iter_speed, p.gpu_memory,
        p.timestamp, p.loss_min, p.loss_max FROM points p JOIN run_keys k ON k.id = p.run;
    DROP TABLE points;
    ALTER TABLE keyed_points RENAME TO points;
    CREATE TABLE keyed_blocks (run INTEGER NOT NULL, block INTEGER NOT NULL, last_it INTEGER NOT NULL, lo REAL,
        hi REAL, PRIMARY KEY (run, block)) WITHOUT ROWID;
    INSERT INTO keyed_blocks SELECT k.key, b.block, b.last_it, b.lo, b.hi FROM blocks b JOIN run_keys k ON k.id = b.run;
    DROP TABLE blocks;
    ALTER TABLE keyed_blocks RENAME TO blocks;
    """,
]

Statement = tuple[str, list[tuple[Any, ...]]]  # SQL and its rows (executemany)
REFRESH = "refresh blocks"  # a Statement whose rows are (run, first, last): summarise those iterations again


class StoreError(Exception):
    """The store cannot be opened (one line, for the CLI: exit 2)."""


class StoreBusy(StoreError):
    """Another monitor holds the file."""


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vsrpp" / "monitor.sqlite"


def bucket_of(iteration: int, first: int, last: int, points: int) -> int:
    """The history bucket of `iteration` when `points` buckets cover [first, last] evenly
    (the same rule in SQL below and in the mock trainer)."""
    return (iteration - first) * points // (last - first + 1)


def bucketed(records: list[dict[str, Any]], points: int, first: int, last: int) -> list[dict[str, Any]]:
    """The rule `history` follows, in Python (the store does it in SQL): records in [first, last] (oldest
    first), each one a point when they are at most `points`, else in `points` even buckets; each bucket
    gives its last record, with its lowest and highest loss."""
    records = [r for r in records if first <= r["iteration"] <= last]
    if len(records) <= points:
        return records
    out: list[dict[str, Any]] = []
    bucket = None
    for record in records:
        k = bucket_of(record["iteration"], first, last, points)
        lo, hi = (record.get(key, record.get("total_loss")) for key in ("loss_min", "loss_max"))
        if k != bucket:
            bucket = k
            out.append({**record, "loss_min": lo, "loss_max": hi})
        else:
            out[-1] = {**record, "loss_min": min(out[-1]["loss_min"], lo), "loss_max": max(out[-1]["loss_max"], hi)}
    return out


class Store:
    def __init__(self, path: str | Path = MEMORY, *, owner: dict[str, Any] | None = None,
                 batch_s: float = 5.0, log: Any = None, readonly: bool = False,
                 max_bytes: int | None = None) -> None:
        """`readonly`: only read (beside a running monitor); nothing is locked, checked or written.
        `max_bytes`: a cap on the file (PRAGMA max_page_count); reaching it is a full disk."""
        self.path = str(path)
        self.memory = self.path == MEMORY or readonly
        self.batch_s = batch_s
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.error: str | None = None  # why storing stopped
        self.moved_aside: Path | None = None
        self._lock_fd: int | None = None
        if readonly and not Path(self.path).is_file():
            raise StoreError(f"no monitor database at {self.path}")
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._take_lock(owner or {})
        try:
            self._writer = self._open_readonly() if readonly else self._open_checked()
        except BaseException:
            self._release_lock()
            raise
        if max_bytes is not None:
            page = self._writer.execute("PRAGMA page_size").fetchone()[0]
            self._writer.execute(f"PRAGMA max_page_count = {max(int(max_bytes) // page, 1)}")
        self._reader = self._writer if self.memory else self._connect()
        if not self.memory:
            self._reader.execute("PRAGMA mmap_size = 268435456")  # a long run's history reads from the page cache
        self._write_lock = threading.Lock()
        self._read_lock = self._write_lock if self.memory else threading.Lock()
        self._queue: queue.SimpleQueue[list[Statement] | threading.Event | None] = queue.SimpleQueue()
        self._hurry = threading.Event()  # cuts the pause between batches short (a flush is waiting)
        self._thread = threading.Thread(target=self._write_loop, name="monitor-store", daemon=True)
        self._thread.start()

    # ---- opening ------------------------------------------------------------
    def _take_lock(self, owner: dict[str, Any]) -> None:
        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreBusy(f"{self.path} is in use by another monitor ({_describe_owner(lock_path)}); "
                            "stop it or pass --db OTHER_FILE") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), **owner}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock; the file stays (harmless)
            self._lock_fd = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            conn.execute("SELECT COUNT(*) FROM runs").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot read {self.path}: {exc}") from None
        return conn

    def _open_checked(self) -> sqlite3.Connection:
        """Open and migrate; a damaged file is moved aside (named in one line) and a new one started."""
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if self.memory:
                raise
            self.moved_aside = self._move_aside()
            self.log(f"monitor: the database {self.path} is damaged ({exc}); moved it to {self.moved_aside} "
                     "and started a new one")
            return self._open()

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, len(SCHEMA)):
                conn.executescript(f"BEGIN; {SCHEMA[step]}; PRAGMA user_version = {step + 1}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        aside = Path(f"{self.path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(self.path + suffix)
            if source.exists():
                source.rename(Path(str(aside) + suffix))
        return aside

    # ---- the writer thread --------------------------------------------------
    def _submit(self, *statements: Statement) -> None:
        if self.error is None:
            self._queue.put(list(statements))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (or storing stopped)."""
        done = threading.Event()
        self._queue.put(done)
        self._hurry.set()
        return done.wait(timeout)

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[Statement] = []
            waiters: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.extend(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            started = time.monotonic()
            if batch and self.error is None:
                self._write(batch)
            for waiter in waiters:
                waiter.set()
            if stop:
                return
            self._hurry.wait(max(0.0, self.batch_s - (time.monotonic() - started)))
            self._hurry.clear()

    def _write(self, batch: list[Statement]) -> None:
        with self._write_lock:
            try:
                self._writer.execute("BEGIN")
                for sql, rows in _grouped(batch):
                    if sql == REFRESH:
                        self._refresh_blocks(rows)
                    else:
                        self._writer.executemany(sql, rows)
                self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._writer.execute("ROLLBACK")
                self.error = str(exc)
                self.log(f"monitor: storing stopped: {exc} ({self.path}); the dashboard goes on, "
                         "but nothing more is kept")

    def _refresh_blocks(self, ranges: list[tuple[Any, ...]]) -> None:
        """Summarise again the blocks that hold iterations [first, last] of each run."""
        spans = [(run, first // BLOCK, last // BLOCK) for run, first, last in _merged_blocks(ranges)]
        self._writer.executemany(f"DELETE FROM blocks WHERE run = {_KEY} AND block BETWEEN ? AND ?", spans)
        self._writer.executemany(
            "INSERT INTO blocks (run, block, last_it, lo, hi) SELECT run, iteration / :size, MAX(iteration), "
            "MIN(loss_min), MAX(loss_max) FROM points WHERE run = (SELECT key FROM run_keys WHERE id = :run) "
            "AND iteration BETWEEN :lo * :size AND :hi * :size + :size - 1 GROUP BY iteration / :size",
            [{"run": run, "lo": lo, "hi": hi, "size": BLOCK} for run, lo, hi in spans])

    def close(self) -> None:
        self._queue.put(None)
        self._hurry.set()
        self._thread.join(timeout=30)
        if not self.memory:
            with contextlib.suppress(sqlite3.Error):  # the WAL folded back into the file
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for conn in {id(c): c for c in (self._reader, self._writer)}.values():
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._release_lock()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            yield self._reader

    # ---- runs ---------------------------------------------------------------
    def upsert_run(self, run: dict[str, Any]) -> None:
        """Insert or update a run's row: only the columns given change (`id` and `name` required)."""
        cols = [c for c in RUN_COLUMNS if c in run]
        updates = ", ".join(_UPDATE.get(c, f"{c} = excluded.{c}") for c in cols if c != "id")
        sql = (f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
               f"ON CONFLICT (id) DO UPDATE SET {updates}")
        self._submit((sql, [tuple(run[c] for c in cols)]))

    def runs(self) -> list[dict[str, Any]]:
        """Every stored run, newest first."""
        with self._reading() as db:
            rows = db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs "
                              "ORDER BY COALESCE(started, last_seen, 0) DESC").fetchall()
        return [dict(zip(RUN_COLUMNS, row, strict=True)) for row in rows]

    def run(self, key: str) -> dict[str, Any] | None:
        """A run by id, else by display name (the newest of that name)."""
        with self._reading() as db:
            row = db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ? OR name = ? "
                             "ORDER BY id = ? DESC, COALESCE(started, 0) DESC LIMIT 1", (key, key, key)).fetchone()
        return dict(zip(RUN_COLUMNS, row, strict=True)) if row else None

    def newest_run(self) -> dict[str, Any] | None:
        runs = self.runs()
        return runs[0] if runs else None

    def delete_run(self, run_id: str) -> None:
        tables = ("validations", "images", "events", "alerts")
        self._submit(*[(f"DELETE FROM {table} WHERE run = {_KEY}", [(run_id,)]) for table in ("points", "blocks")],
                     ("DELETE FROM run_keys WHERE id = ?", [(run_id,)]),
                     *[(f"DELETE FROM {table} WHERE run = ?", [(run_id,)]) for table in tables],
                     ("DELETE FROM runs WHERE id = ?", [(run_id,)]))

    # ---- history points -----------------------------------------------------
    def add_points(self, run_id: str, points: Iterable[dict[str, Any]]) -> None:
        rows = [_point_row(run_id, p) for p in points]
        if rows:
            its = [row[1] for row in rows]
            self._submit((_ENSURE_KEY, [(run_id,)]), (_INSERT_POINT, rows), (REFRESH, [(run_id, min(its), max(its))]))

    def replace_points(self, run_id: str, first: int, last: int, points: Iterable[dict[str, Any]]) -> None:
        """The trainer's record for iterations [first, last] replaces ours there (one transaction)."""
        rows = [_point_row(run_id, p) for p in points]
        its = [first, last, *(row[1] for row in rows)]
        self._submit((_ENSURE_KEY, [(run_id,)]),
                     (f"DELETE FROM points WHERE run = {_KEY} AND iteration BETWEEN ? AND ?", [(run_id, first, last)]),
                     *([(_INSERT_POINT, rows)] if rows else []), (REFRESH, [(run_id, min(its), max(its))]))

    def history(self, run_id: str, points: int = 2000, first: int | None = None,
                last: int | None = None) -> dict[str, Any]:
        """At most `points` points covering [first, last] evenly: each the last record of its bucket,
        with the bucket's lowest and highest loss; and every validation in range."""
        points = max(int(points), 1)
        with self._reading() as db:
            found = db.execute("SELECT key FROM run_keys WHERE id = ?", (run_id,)).fetchone()
            key = found[0] if found else -1
            top = db.execute("SELECT MAX(iteration) FROM points WHERE run = ?", (key,)).fetchone()[0]
            top_val = db.execute("SELECT MAX(iteration) FROM validations WHERE run = ?", (run_id,)).fetchone()[0]
            known = max((t for t in (top, top_val) if t is not None), default=0)
            first = max(0, first or 0)
            last = known if last is None else last
            span = last - first + 1
            args = {"run": key, "first": first, "last": last, "n": points, "span": span, "block": BLOCK}
            rows = db.execute(_POINTS, args).fetchall() if span > 0 else []  # few enough: each record a point
            if len(rows) > points:
                rows = db.execute(_HISTORY_BY_BLOCK if span // points >= BLOCK else _HISTORY, args).fetchall()
            vals = db.execute(
                "SELECT v.metrics, EXISTS (SELECT 1 FROM images i WHERE i.run = v.run AND i.iteration = v.iteration) "
                "FROM validations v WHERE v.run = ? AND v.iteration BETWEEN ? AND ? ORDER BY v.iteration",
                (run_id, first, last)).fetchall()
        history = [dict(zip(POINT_COLUMNS, row, strict=True)) for row in rows]
        validations = [{**json.loads(m), "image": bool(img)} for m, img in vals]
        return {"history": history, "validations": validations, "from": first, "to": last, "last_iteration": known}

    # ---- validations and their images ---------------------------------------
    def add_validation(self, run_id: str, metrics: dict[str, Any], image: bytes | None = None,
                       image_type: str | None = None, best: bool = False) -> None:
        iteration = int(metrics["iteration"])
        statements: list[Statement] = [("INSERT OR REPLACE INTO validations (run, iteration, metrics) VALUES (?, ?, ?)",
                                        [(run_id, iteration, json.dumps(metrics, allow_nan=False))])]
        if image is not None and image_type:
            statements += [
                ("INSERT OR REPLACE INTO images (run, iteration, best, type, data) VALUES (?, ?, ?, ?, ?)",
                 [(run_id, iteration, int(best), image_type, image)]),
                ("DELETE FROM images WHERE run = ? AND best = 0 AND iteration NOT IN "
                 "(SELECT iteration FROM images WHERE run = ? ORDER BY iteration DESC LIMIT ?)",
                 [(run_id, run_id, KEEP_IMAGES)]),
            ]
        self._submit(*statements)

    def validation(self, run_id: str, iteration: int | None = None) -> dict[str, Any] | None:
        """One validation's metrics (default: the latest), with `image` saying whether it is kept."""
        where, args = ("AND v.iteration = ?", (run_id, iteration)) if iteration is not None else ("", (run_id,))
        with self._reading() as db:
            row = db.execute(
                "SELECT v.metrics, EXISTS (SELECT 1 FROM images i WHERE i.run = v.run AND i.iteration = v.iteration) "
                f"FROM validations v WHERE v.run = ? {where} ORDER BY v.iteration DESC LIMIT 1", args).fetchone()
        return {**json.loads(row[0]), "image": bool(row[1])} if row else None

    def image(self, run_id: str, iteration: int | None = None) -> tuple[bytes, str, int] | None:
        """A kept comparison image: (bytes, content type, iteration); default: the latest kept."""
        where, args = ("AND iteration = ?", (run_id, iteration)) if iteration is not None else ("", (run_id,))
        with self._reading() as db:
            row = db.execute(f"SELECT data, type, iteration FROM images WHERE run = ? {where} "
                             "ORDER BY iteration DESC LIMIT 1", args).fetchone()
        return (bytes(row[0]), row[1], row[2]) if row else None

    # ---- events -------------------------------------------------------------
    def add_event(self, run_id: str, event: dict[str, Any]) -> None:
        data = event.get("data")
        self._submit(("INSERT INTO events (run, ts, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                      [(run_id, event.get("ts"), event.get("kind"), event.get("message"),
                        json.dumps(data) if data is not None else None)]))

    def events(self, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The run's last `limit` events, oldest first."""
        with self._reading() as db:
            rows = db.execute("SELECT ts, kind, message, data FROM events WHERE run = ? ORDER BY id DESC LIMIT ?",
                              (run_id, limit)).fetchall()
        return [{"ts": ts, "kind": kind, "message": message, "data": json.loads(data) if data else {}}
                for ts, kind, message, data in reversed(rows)]

    # ---- size ---------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self._reading() as db:
            return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("runs", "points", "validations", "images", "events")}

    # ---- alerts (monitor/alerting.py) ----------------------------------------
    ALERT_COLUMNS = ("id", "run", "kind", "title", "text", "iteration", "ts", "delivery", "tries")

    def add_alert(self, alert: dict[str, Any]) -> None:
        """One alert (`Alert.row()`), with its delivery state so far."""
        self._submit((f"INSERT OR IGNORE INTO alerts ({', '.join(self.ALERT_COLUMNS)}) "
                      f"VALUES ({', '.join('?' * len(self.ALERT_COLUMNS))})",
                      [tuple(alert[c] for c in self.ALERT_COLUMNS)]))

    def set_alert_delivery(self, alert_id: str, delivery: str, tries: int) -> None:
        self._submit(("UPDATE alerts SET delivery = ?, tries = ? WHERE id = ?", [(delivery, tries, alert_id)]))

    def alerts(self, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The run's last `limit` alerts, oldest first."""
        with self._reading() as db:
            rows = db.execute(f"SELECT {', '.join(self.ALERT_COLUMNS)} FROM alerts WHERE run = ? "
                              "ORDER BY rowid DESC LIMIT ?", (run_id, limit)).fetchall()
        return [dict(zip(self.ALERT_COLUMNS, row, strict=True)) for row in reversed(rows)]

    def last_alert_kinds(self) -> dict[str, str]:
        """Each run's latest alert kind: where a restarted monitor picks the runs up (no second `started`)."""
        with self._reading() as db:
            rows = db.execute("SELECT run, kind FROM alerts WHERE rowid IN "
                              "(SELECT MAX(rowid) FROM alerts GROUP BY run)").fetchall()
        return dict(rows)


_UPDATE = {"started": "started = COALESCE(MIN(runs.started, excluded.started), runs.started, excluded.started)"}
_KEY = "(SELECT key FROM run_keys WHERE id = ?)"  # a run id's key in points and blocks
_ENSURE_KEY = "INSERT OR IGNORE INTO run_keys (id) VALUES (?)"
_INSERT_POINT = (f"INSERT OR REPLACE INTO points (run, {', '.join(POINT_COLUMNS)}) "
                 f"VALUES ({_KEY}, {', '.join('?' * len(POINT_COLUMNS))})")

_POINTS = (f"SELECT {', '.join(POINT_COLUMNS)} FROM points WHERE run = :run AND iteration BETWEEN :first AND :last "
           "ORDER BY iteration LIMIT :n + 1")

# Buckets of [first, last]; each point is its bucket's last record, with the bucket's loss extremes.
_HISTORY = f"""
WITH b AS (
    SELECT (iteration - :first) * :n / :span AS k, MAX(iteration) AS last_it,
           MIN(loss_min) AS lo, MAX(loss_max) AS hi
    FROM points WHERE run = :run AND iteration BETWEEN :first AND :last GROUP BY k)
SELECT {', '.join(f'p.{c}' for c in POINT_COLUMNS[:-2])}, b.lo, b.hi
FROM b JOIN points p ON p.run = :run AND p.iteration = b.last_it ORDER BY p.iteration
"""


# The same for long ranges from the block summaries: bucket edges snap to whole blocks.
_HISTORY_BY_BLOCK = f"""
WITH b AS (
    SELECT (block * :block - :first) * :n / :span AS k, MAX(last_it) AS last_it, MIN(lo) AS lo, MAX(hi) AS hi
    FROM blocks WHERE run = :run AND block BETWEEN :first / :block AND :last / :block GROUP BY k)
SELECT {', '.join(f'p.{c}' for c in POINT_COLUMNS[:-2])}, b.lo, b.hi
FROM b JOIN points p ON p.run = :run AND p.iteration = b.last_it ORDER BY p.iteration
"""


def _point_row(run_id: str, point: dict[str, Any]) -> tuple[Any, ...]:
    loss = point.get("total_loss")
    lo, hi = point.get("loss_min"), point.get("loss_max")
    return (run_id, int(point["iteration"]), loss, point.get("learn_rate"), point.get("iter_speed"),
            point.get("gpu_memory"), point.get("timestamp"), loss if lo is None else lo, loss if hi is None else hi)


def _merged_blocks(ranges: list[tuple[Any, ...]]) -> list[tuple[str, int, int]]:
    """(run, first, last) ranges merged where their blocks overlap or touch, so no block is summarised twice."""
    out: list[tuple[str, int, int]] = []
    for run, first, last in sorted(ranges):
        if out and out[-1][0] == run and first // BLOCK <= out[-1][2] // BLOCK + 1:
            out[-1] = (run, out[-1][1], max(out[-1][2], last))
        else:
            out.append((run, first, last))
    return out


def _grouped(batch: list[Statement]) -> Iterator[Statement]:
    """Consecutive statements with the same SQL become one executemany (order kept)."""
    sql, rows = batch[0][0], list(batch[0][1])
    for next_sql, next_rows in batch[1:]:
        if next_sql == sql:
            rows.extend(next_rows)
        else:
            yield sql, rows
            sql, rows = next_sql, list(next_rows)
    yield sql, rows


def _describe_owner(lock_path: str) -> str:
    try:
        info = json.loads(Path(lock_path).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    parts = [f"pid {info['pid']}" if "pid" in info else "", f"on {info['host']}" if "host" in info else "",
             f"serving port {info['port']}" if "port" in info else ""]
    return " ".join(p for p in parts if p) or "owner unknown"
