"""The run store: an SQLite index plus one folder per run, so every run (failed ones too) outlives the process.

Several processes (the app, the CLI) and threads share one store, so every call opens its own short-lived
connection to a WAL database and keeps its transaction to a few statements. Result files are written
atomically before the index says "done", so a reader never sees a finished run with missing files.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ldifs_core.config import STATUSES, RunConfig
from ldifs_core.errors import RunNotFound
from ldifs_core.paths import default_store_dir

if TYPE_CHECKING:  # torch loads only when weights are written: the app's pages stay light
    import torch

BUSY_TIMEOUT_S = 30.0
ENDED_STATUSES = ("failed", "cancelled")
EMBEDDED_MODEL = "embedded"  # how list(model=...) names the default model (config.model is None)
INTERRUPTED_MESSAGE = "The process running it stopped (app restart or crash); start it again."
RUN_ID_PATTERN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
PROC = Path("/proc")

# Headline numbers copied from metrics.json into the index, so run tables need not open every run folder.
SUMMARY_KEYS = {
    "accuracy_after": ("downstream", "accuracy_after"),
    "zero_shot_before": ("downstream", "zero_shot_before"),
    "mean_zs_delta": ("mean_zs_delta",),
    "mean_lp_delta": ("mean_lp_delta",),
    "total_s": ("timings", "total_s"),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    dataset TEXT NOT NULL,
    objective TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    progress TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    owner_host TEXT,
    owner_pid INTEGER,
    owner_started TEXT
)
"""


@dataclass
class RunRecord:
    run_id: str
    config: RunConfig
    status: str  # one of config.STATUSES
    message: str  # '' or the error / cancel reason shown to users
    created_at: float  # unix time
    updated_at: float
    progress: dict  # latest live progress (may be {})
    summary: dict  # headline numbers for tables ({} until done)


class RunStore:
    """Every run ever started under `root`: root/index.sqlite plus root/<run_id>/ with its files."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_store_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._db_path = self.root / "index.sqlite"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            db.execute(SCHEMA)
        self.mark_interrupted()

    # -- writing -------------------------------------------------------------------------------------

    def create(self, config: RunConfig, status: str = "queued") -> str:
        _check_status(status)
        run_id, run_dir = self._claim_run_dir()
        config_json = _dumps(config.to_dict())
        _write_atomic(run_dir / "config.json", lambda path: path.write_text(config_json))
        now = time.time()
        row = {
            "run_id": run_id, "config": config_json, "dataset": config.dataset,
            "objective": config.objective, "model": config.model or EMBEDDED_MODEL, "status": status,
            "created_at": now, "updated_at": now, **_current_owner(),
        }
        with self._connect() as db:
            db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        return run_id

    def set_status(self, run_id: str, status: str, message: str = "") -> None:
        """Setting "running" also makes this process the owner, so a restart can tell the run was orphaned."""
        _check_status(status)
        owner = _current_owner() if status == "running" else {}
        self._update(run_id, status=status, message=message, **owner)

    def update_progress(self, run_id: str, progress: dict) -> None:
        self._update(run_id, progress=_dumps(progress))

    def finish(self, run_id: str, metrics: dict, arrays: dict[str, np.ndarray] | None = None,
               history: list[dict] | None = None, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Write the result files first, then flip the row to "done": "done" always means complete."""
        run_dir = self._existing_run_dir(run_id)
        metrics = {**metrics, "status": "done", "run_id": run_id}
        _write_atomic(run_dir / "metrics.json", lambda path: path.write_text(_dumps(metrics)))
        if arrays is not None:
            _write_atomic(run_dir / "arrays.npz", lambda path: np.savez_compressed(path, **arrays))
        if history is not None:
            _write_history(run_dir, history)
        if weights is not None:
            import safetensors.torch

            tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
            _write_atomic(run_dir / "weights.safetensors", lambda path: safetensors.torch.save_file(tensors, path))
        self._update(run_id, status="done", message="", summary=_dumps(_summarise(metrics)))

    def fail(self, run_id: str, status: str, message: str, history: list[dict] | None = None) -> None:
        """Record a failed or cancelled run; its history is kept so the partial curves can still be drawn."""
        if status not in ENDED_STATUSES:
            raise ValueError(f"fail() takes status 'failed' or 'cancelled', not {status!r}")
        run_dir = self._existing_run_dir(run_id)
        if history is not None:
            _write_history(run_dir, history)
        self._update(run_id, status=status, message=message)

    def delete(self, run_id: str) -> None:
        """Drop the row first, so no listing ever shows a run whose folder is half removed."""
        run_dir = self._run_dir(run_id)
        with self._connect() as db:
            if db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount == 0:
                raise self._not_found(run_id)
        shutil.rmtree(run_dir, ignore_errors=True)

    def mark_interrupted(self) -> int:
        """Runs still queued or running whose owning process is gone become "interrupted"; returns how many."""
        with self._connect() as db:
            active = db.execute(
                "SELECT run_id, updated_at, owner_host, owner_pid, owner_started FROM runs"
                " WHERE status IN ('queued', 'running')"
            ).fetchall()
        orphans = [row for row in active if not _owner_alive(row["owner_host"], row["owner_pid"], row["owner_started"])]
        count = 0
        with self._connect() as db:
            for row in orphans:
                # Unchanged updated_at: nobody claimed or advanced the run since it was read above.
                count += db.execute(
                    "UPDATE runs SET status = 'interrupted', message = ?, updated_at = ?"
                    " WHERE run_id = ? AND updated_at = ?",
                    (INTERRUPTED_MESSAGE, time.time(), row["run_id"], row["updated_at"]),
                ).rowcount
        return count

    # -- reading -------------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._not_found(run_id)
        return _record(row)

    def list(self, *, dataset: str | None = None, objective: str | None = None, model: str | None = None,
             status: str | None = None) -> list[RunRecord]:
        """Newest first; model="embedded" selects runs of the default model."""
        if status is not None:
            _check_status(status)
        filters = {"dataset": dataset, "objective": objective, "model": model, "status": status}
        used = {column: value for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in used) or "1"
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM runs WHERE {where} ORDER BY created_at DESC, rowid DESC", tuple(used.values())
            ).fetchall()
        return [_record(row) for row in rows]

    def metrics(self, run_id: str) -> dict:
        path = self._existing_run_dir(run_id) / "metrics.json"
        if not path.exists():
            record = self.get(run_id)
            reason = f": {record.message}" if record.message else ""
            raise RunNotFound(f"Run {run_id} has no results yet: it is {record.status}{reason}.")
        return json.loads(path.read_text())

    def arrays(self, run_id: str) -> dict[str, np.ndarray]:
        path = self._existing_run_dir(run_id) / "arrays.npz"
        if not path.exists():
            return {}
        with np.load(path) as npz:
            return {name: npz[name] for name in npz.files}

    def history(self, run_id: str) -> list[dict]:
        path = self._existing_run_dir(run_id) / "history.json"
        return json.loads(path.read_text()) if path.exists() else []

    def weights_path(self, run_id: str) -> Path | None:
        path = self._existing_run_dir(run_id) / "weights.safetensors"
        return path if path.exists() else None

    # -- internals -----------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per call: safe across threads and processes; commits on success, then closes."""
        db = sqlite3.connect(self._db_path, timeout=BUSY_TIMEOUT_S)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; keeps frequent progress writes cheap
        try:
            with db:
                yield db
        finally:
            db.close()

    def _update(self, run_id: str, **columns: object) -> None:
        assignments = ", ".join(f"{column} = ?" for column in columns)
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE runs SET {assignments}, updated_at = ? WHERE run_id = ?",
                (*columns.values(), time.time(), run_id),
            )
        if cursor.rowcount == 0:
            raise self._not_found(run_id)

    def _claim_run_dir(self) -> tuple[str, Path]:
        """mkdir is atomic, so two processes creating runs in the same second never share an id."""
        while True:
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            run_dir = self.root / run_id
            try:
                run_dir.mkdir()
            except FileExistsError:
                continue
            return run_id, run_dir

    def _run_dir(self, run_id: str) -> Path:
        """Only well-formed ids map to a folder, so a bad id can never reach outside the store."""
        if not RUN_ID_PATTERN.fullmatch(run_id):
            raise self._not_found(run_id)
        return self.root / run_id

    def _existing_run_dir(self, run_id: str) -> Path:
        run_dir = self._run_dir(run_id)
        if not run_dir.is_dir():
            raise self._not_found(run_id)
        return run_dir

    def _not_found(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"No run '{run_id}' in {self.root}. Use `python -m ldifs_core list` to see the run ids.")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {STATUSES}")


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        config=RunConfig.from_dict(json.loads(row["config"])),
        status=row["status"],
        message=row["message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        progress=json.loads(row["progress"]),
        summary=json.loads(row["summary"]),
    )


def _summarise(metrics: dict) -> dict:
    summary = {}
    for key, path in SUMMARY_KEYS.items():
        value: object = metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            summary[key] = value
    return summary


def _dumps(value: object) -> str:
    """JSON that also takes the numpy scalars and arrays metrics tend to contain."""
    return json.dumps(value, default=_jsonable)


def _jsonable(value: object) -> object:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_history(run_dir: Path, history: list[dict]) -> None:
    _write_atomic(run_dir / "history.json", lambda path: path.write_text(_dumps(history)))


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Readers see the old file or the whole new one. The temp name keeps the suffix (numpy appends .npz)."""
    temp = path.with_name(f".{uuid.uuid4().hex}.{path.name}")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# -- who owns a run --------------------------------------------------------------------------------------


def _current_owner() -> dict[str, object]:
    """Host, pid and start time: together they tell a live owner from a dead one whose pid was reused."""
    pid = os.getpid()
    return {"owner_host": socket.gethostname(), "owner_pid": pid, "owner_started": _start_time(pid)}


def _owner_alive(host: str | None, pid: int | None, started: str | None) -> bool:
    """Same host, process still there, and not a recycled pid (e.g. pid 1 again in a restarted container)."""
    if host != socket.gethostname() or pid is None:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        return state != "Z" and (started is None or start == started)  # a zombie has already exited
    if PROC.is_dir():
        return False  # procfs but no entry: the process is gone
    if os.name == "posix":
        return _signal_reaches(pid)
    return pid == os.getpid()  # elsewhere (Windows) only this process can vouch for itself


def _start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/<pid>/stat; None without procfs or once the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name in (...) may contain spaces
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def _signal_reaches(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only probes; safe on POSIX
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return True
