"""The workspace history store: SQLite in WAL mode.

The engine writes (one writer: the running engine, short transactions); the TUI
and ``bpllm runs`` read concurrently (WAL lets readers see the last committed
state while a write is in progress).  A crash loses at most the transaction in
flight; the database itself stays consistent.

Tables: runs, steps, versions, exam_results, mastery, health_alerts, data_snapshots,
lesson_integrations.  Open read-only with ``History(path, readonly=True)``.
"""
from __future__ import annotations

import errno
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at REAL, ended_at REAL, status TEXT, exit_code INTEGER,
    profile TEXT, cycles INTEGER, only_steps TEXT, from_step TEXT, pid INTEGER, message TEXT, config_json TEXT);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT, cycle INTEGER, step_id TEXT, name TEXT, status TEXT, started_at REAL, ended_at REAL,
    duration REAL, attempt INTEGER, message TEXT, result_json TEXT,
    PRIMARY KEY (run_id, cycle, step_id));
CREATE TABLE IF NOT EXISTS versions (
    version TEXT PRIMARY KEY, created_at REAL, run_id TEXT, cycle INTEGER, profile TEXT, path TEXT,
    base TEXT, data_hash TEXT, metrics_json TEXT);
CREATE TABLE IF NOT EXISTS exam_results (
    version TEXT, lesson_id TEXT, prompt_id TEXT, run_id TEXT, score REAL, valid INTEGER, seen INTEGER,
    time_s REAL, status TEXT, category TEXT, record_json TEXT, created_at REAL,
    PRIMARY KEY (version, lesson_id, prompt_id));
CREATE TABLE IF NOT EXISTS mastery (
    version TEXT, node TEXT, score REAL, n INTEGER, band TEXT, delta REAL, created_at REAL,
    PRIMARY KEY (version, node));
CREATE TABLE IF NOT EXISTS health_alerts (
    key TEXT, scope TEXT, check_name TEXT, severity TEXT, message TEXT, value REAL, threshold REAL,
    run_id TEXT, first_seen REAL, last_seen REAL, count INTEGER DEFAULT 1,
    PRIMARY KEY (key, scope));
CREATE TABLE IF NOT EXISTS data_snapshots (
    hash TEXT PRIMARY KEY, created_at REAL, run_id TEXT, rows INTEGER, train INTEGER, validation INTEGER,
    quarantined INTEGER, stats_json TEXT);
CREATE TABLE IF NOT EXISTS lesson_integrations (
    lesson_id TEXT PRIMARY KEY, integrated_at REAL, run_id TEXT, prompts INTEGER, rows INTEGER, lesson_hash TEXT);
"""


class History:
    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 10.0):
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        if readonly:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=timeout,
                                        check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=timeout, check_same_thread=False,
                                        isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_DDL)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def _exec(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute(sql, tuple(params))
                self.conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback(exc)
                raise

    def _many(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(sql, rows)
                self.conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback(exc)
                raise

    def _rollback(self, exc: BaseException) -> None:
        """Roll back after ``exc``; a full disk becomes an OSError naming history.db (SQLite's own "database
        or disk is full" names no file, and its failed COMMIT has already ended the transaction, so a plain
        ROLLBACK raised a second, chained error)."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass  # the original error (re-raised by the caller) says what went wrong
        if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
            raise OSError(errno.ENOSPC, f"No space left on device ({exc})", str(self.path)) from None

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]

    # runs / steps ------------------------------------------------------------
    def run_started(self, run_id: str, *, profile: str, cycles: int, only: str | None, from_step: str | None,
                    pid: int, config: dict[str, Any]) -> None:
        self._exec("INSERT INTO runs (run_id, started_at, status, profile, cycles, only_steps, from_step, pid, config_json)"
                   " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET status='running', pid=excluded.pid,"
                   " ended_at=NULL, exit_code=NULL",
                   (run_id, time.time(), "running", profile, cycles, only, from_step, pid, json.dumps(config)))

    def run_ended(self, run_id: str, status: str, exit_code: int, message: str | None = None) -> None:
        self._exec("UPDATE runs SET ended_at=?, status=?, exit_code=?, message=? WHERE run_id=?",
                   (time.time(), status, exit_code, message, run_id))

    def step(self, run_id: str, cycle: int, step_id: str, name: str, status: str, *, started_at: float | None = None,
             duration: float | None = None, attempt: int = 1, message: str | None = None,
             result: Any = None) -> None:
        self._exec("INSERT INTO steps (run_id, cycle, step_id, name, status, started_at, ended_at, duration, attempt,"
                   " message, result_json) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, cycle, step_id) DO UPDATE"
                   " SET status=excluded.status, started_at=COALESCE(excluded.started_at, steps.started_at),"
                   " ended_at=excluded.ended_at, duration=excluded.duration, attempt=excluded.attempt,"
                   " message=excluded.message, result_json=excluded.result_json",
                   (run_id, cycle, step_id, name, status, started_at,
                    time.time() if status in ("complete", "error", "skip", "stopped") else None, duration, attempt,
                    message, json.dumps(result, default=str) if result is not None else None))

    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.query("SELECT run_id, started_at, ended_at, status, exit_code, profile, cycles, only_steps,"
                          " from_step, pid, message FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))

    # versions / results --------------------------------------------------------
    def add_version(self, version: str, *, run_id: str, cycle: int | None = None, profile: str | None = None,
                    path: str | None = None, base: str | None = None, data_hash: str | None = None,
                    metrics: dict[str, Any] | None = None) -> None:
        self._exec("INSERT OR REPLACE INTO versions VALUES (?,?,?,?,?,?,?,?,?)",
                   (version, time.time(), run_id, cycle, profile, path, base, data_hash, json.dumps(metrics or {})))

    def versions(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM versions ORDER BY created_at")

    def add_exam_results(self, version: str, run_id: str, records: list[dict[str, Any]]) -> None:
        now = time.time()
        rows = [(version, r["lesson_id"], r["prompt_id"], run_id, r.get("score"), _b(r.get("valid")), _b(r.get("seen")),
                 r.get("time_s"), r.get("status"), r.get("category"), json.dumps(r, default=str), now) for r in records]
        self._many("INSERT OR REPLACE INTO exam_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def examined_lessons(self) -> set[str]:
        return {r["lesson_id"] for r in self.query("SELECT DISTINCT lesson_id FROM exam_results")}

    def set_mastery(self, version: str, nodes: list[dict[str, Any]]) -> None:
        now = time.time()
        self._many("INSERT OR REPLACE INTO mastery VALUES (?,?,?,?,?,?,?)",
                   [(version, n["node"], n.get("score"), n.get("n"), n.get("band"), n.get("delta"), now) for n in nodes])

    def mastery(self, version: str) -> list[dict[str, Any]]:
        return self.query("SELECT node, score, n, band, delta FROM mastery WHERE version=? ORDER BY score", (version,))

    # health: an alert is never hidden by a re-run; it is counted again -----------
    def record_alert(self, key: str, scope: str, check: str, severity: str, message: str, *,
                     value: float | None = None, threshold: float | None = None, run_id: str | None = None) -> int:
        now = time.time()
        self._exec("INSERT INTO health_alerts VALUES (?,?,?,?,?,?,?,?,?,?,1) ON CONFLICT(key, scope) DO UPDATE SET"
                   " last_seen=excluded.last_seen, count=health_alerts.count+1, message=excluded.message,"
                   " value=excluded.value, severity=CASE WHEN health_alerts.severity='critical' THEN 'critical'"
                   " ELSE excluded.severity END",
                   (key, scope, check, severity, message, value, threshold, run_id, now, now))
        row = self.query("SELECT count FROM health_alerts WHERE key=? AND scope=?", (key, scope))
        return int(row[0]["count"]) if row else 1

    def alerts(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM health_alerts ORDER BY last_seen DESC")

    # data ------------------------------------------------------------------------
    def add_data_snapshot(self, h: str, run_id: str | None, stats: dict[str, Any]) -> bool:
        """Record a data hash; True when it is new (the data changed)."""
        known = self.query("SELECT 1 FROM data_snapshots WHERE hash=?", (h,))
        self._exec("INSERT OR IGNORE INTO data_snapshots VALUES (?,?,?,?,?,?,?,?)",
                   (h, time.time(), run_id, stats.get("rows"), stats.get("train"), stats.get("validation"),
                    stats.get("quarantined"), json.dumps(stats, default=str)))
        return not known

    def last_data_hash(self) -> str | None:
        row = self.query("SELECT hash FROM data_snapshots ORDER BY created_at DESC LIMIT 1")
        return row[0]["hash"] if row else None

    def integrate_lesson(self, lesson_id: str, run_id: str | None, prompts: int, rows: int, lesson_hash: str) -> None:
        self._exec("INSERT OR REPLACE INTO lesson_integrations VALUES (?,?,?,?,?,?)",
                   (lesson_id, time.time(), run_id, prompts, rows, lesson_hash))

    def integrated_lessons(self) -> dict[str, dict[str, Any]]:
        return {r["lesson_id"]: r for r in self.query("SELECT * FROM lesson_integrations")}


def like_with_like(old: dict[str, list[float]], new: dict[str, list[float]]) -> tuple[str, float] | None:
    """The change of one lesson's exam score between two versions, like with like: its unseen prompts
    against unseen ones, else seen against seen, else unmarked against unmarked (``{"unseen": [scores],
    "seen": [...], "unmarked": [...]}`` each). None when they share no such group: a lesson examined
    unseen by v1 and, after it was trained on, seen by v2 has no honest arrow."""
    for group in ("unseen", "seen", "unmarked"):
        a, b = old.get(group) or [], new.get(group) or []
        if a and b:
            return group, round(sum(b) / len(b) - sum(a) / len(a), 4)
    return None


def _b(v: Any) -> int | None:
    return None if v is None else int(bool(v))
