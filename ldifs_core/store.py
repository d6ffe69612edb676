"""The run store: an SQLite index plus one folder per run, so every run (failed ones too) outlives the process.

Several processes (the app, the CLI) and threads share one store, so every call opens its own short-lived
connection to a WAL database and keeps its transaction to a few statements. Result files are written
atomically before the index says "done", so a reader never sees a finished run with missing files.

A store is read through whatever happened to it: a run whose files are corrupt, missing or written by another
version is listed with status "unreadable" (its message says why) and reading its results raises
RunUnreadable; a folder this process may not write is opened read-only and never written; a disk that fills
up while results are saved records the run as failed. Parser errors never leave this module.

The index can always be rebuilt from the run folders: each keeps its settings (config.json), its status, message
and owner (status.json) and, once done, its results. An index that is missing, empty or corrupt is rebuilt when the
store opens (a corrupt one is kept beside it); `python -m ldifs_core store rebuild-index` does it on request.

Why one module over 350 lines: the index and the run folders keep one contract together (files first, then the
row; a row is only "done" when its files read), so writing, reading and the verdict on a run's files share their
internals. What is not that contract lives beside it: process ownership (ownership.py), the JSON files and disk
advice (disk.py), WiSE-FT records (wise_records.py) and sequence records (sequence_records.py).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ldifs_core.config import (CODE_VERSION, DEFAULT_LAMBDA, RUN_OBJECTIVES, SCHEMA_VERSION, STATUSES,
                                STORED_DEFAULT_LAMBDA, RunConfig)
from ldifs_core import disk, ownership
from ldifs_core.errors import IndexUnreadable, RunNotFound, RunUnreadable, StoreUnavailable
from ldifs_core.metrics import MetricsShapeError, RunMetrics
from ldifs_core.paths import default_store_dir, write_atomic

if TYPE_CHECKING:  # torch loads only when weights are written: the app's pages stay light
    import torch

BUSY_TIMEOUT_S = 30.0
ENDED_STATUSES = ("failed", "cancelled")
# Shown, never stored: a run whose settings or results this version cannot read.
UNREADABLE = "unreadable"
STORED_STATUSES = tuple(status for status in STATUSES if status != UNREADABLE)
LISTED_STATUSES = (*STORED_STATUSES, UNREADABLE)
EMBEDDED_MODEL = "embedded"  # the index's model column for the default model (config.model is None)
INTERRUPTED_MESSAGE = "The process running it stopped (app restart or crash); start it again."
RUN_ID_PATTERN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
STATUS_FILE = "status.json"  # a run's status row, kept in its folder so a lost index can be rebuilt
KEPT_COLUMNS = ("status", "message", "created_at", "owner_host", "owner_pid", "owner_started")
REBUILT_MESSAGE = ("Its status was lost with the run index (it was stored before run folders kept it); start it "
                   "again if you need its results.")
CORRUPT_INDEX = ("file is not a database", "malformed")  # what SQLite says of an index it cannot parse
LOW_SPACE_BYTES = 16 * 2 ** 20  # below this, a disk I/O error of the index is taken for a full disk

# Headline numbers copied from metrics.json into the index, so run tables need not open every run folder.
SUMMARY_KEYS = {
    "accuracy_after": ("downstream", "accuracy_after"),
    "zero_shot_before": ("downstream", "zero_shot_before"),
    "mean_zs_delta": ("mean_zs_delta",),
    "mean_lp_delta": ("mean_lp_delta",),
    "mean_zs_delta_ci": ("mean_zs_delta_ci",),
    "mean_lp_delta_ci": ("mean_lp_delta_ci",),
    "total_s": ("timings", "total_s"),
}

NO_TASK = ""  # the index's dataset column of a check without a task (its config says None)
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
    config: RunConfig  # of an unreadable run: what the index still tells (dataset, objective, model)
    status: str  # one of LISTED_STATUSES
    message: str  # '' or the error / cancel reason shown to users; "unreadable: <reason>" for unreadable runs
    created_at: float  # unix time
    updated_at: float
    progress: dict  # latest live progress (may be {})
    summary: dict  # headline numbers for tables ({} until done)
    owner: str = ""  # which process runs (or last ran) it, e.g. "process 1234 on host-a"; '' when unknown


@dataclass(frozen=True)
class FinishedRun:
    """Everything a finished run keeps, in memory: how a run moves from one store to another (a Ray trial's
    temporary store on its worker to the driver's store)."""

    metrics: dict
    arrays: dict[str, np.ndarray]
    history: list[dict]
    weights: dict[str, torch.Tensor] | None  # None when the run kept none


class RunStore:
    """Every run ever started under `root`: root/index.sqlite plus root/<run_id>/ with its files.

    A folder this process cannot write is opened read-only (`read_only`): its runs can be listed, shown and
    exported, and nothing is written, not even the index's bookkeeping; recording a run raises StoreUnavailable.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_store_dir()
        self._db_path = self.root / "index.sqlite"
        _open_folder(self.root)
        self.rebuilt = 0  # runs brought back from their folders when the index was opened
        self.read_only = not _can_write(self.root, self._db_path)
        if self.read_only:
            self._query("SELECT run_id FROM runs LIMIT 1")  # an unusable index says so now, not on the first page
            return
        self._open_or_rebuild_index()
        self.mark_interrupted()

    # -- writing -------------------------------------------------------------------------------------

    def create(self, config: RunConfig, status: str = "queued") -> str:
        _check_status(status)
        self.check_writable()
        config = config.with_lambda_resolved()  # the λ it is made with, whatever the defaults become
        run_id, run_dir = self._claim_run_dir()
        now = time.time()
        row = {
            "run_id": run_id, "config": disk.dumps(config.to_dict()), "dataset": config.dataset or NO_TASK,
            "objective": config.objective, "model": config.model or EMBEDDED_MODEL, "status": status,
            "message": "", "created_at": now, "updated_at": now, **ownership.current_owner(),
        }
        try:
            disk.write_json(run_dir / "config.json", config.to_dict())
            disk.write_json(run_dir / STATUS_FILE, {column: row[column] for column in KEPT_COLUMNS})
        except OSError as err:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise StoreUnavailable(f"Could not start a run in {self.root}: {disk.os_reason(err)}. {disk.os_advice(err)}") \
                from err
        try:
            with self._connect() as db:  # REPLACE: an index rebuilt meanwhile may already have it from its folder
                _insert(db, row, "OR REPLACE")
        except StoreUnavailable:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return run_id

    def set_status(self, run_id: str, status: str, message: str = "") -> None:
        """Setting "running" also makes this process the owner, so a restart can tell the run was orphaned."""
        _check_status(status)
        owner = ownership.current_owner() if status == "running" else {}
        self._update(run_id, status=status, message=message, **owner)

    def update_progress(self, run_id: str, progress: dict) -> None:
        self._update(run_id, progress=disk.dumps(progress))

    def finish(self, run_id: str, metrics: dict, arrays: dict[str, np.ndarray] | None = None,
               history: list[dict] | None = None, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Write the result files first, then flip the row to "done": "done" always means complete.

        metrics.json gets this version's `schema_version`, `status` and `run_id`, and the `code_version` that
        made it (kept when `metrics` names one: a run imported from a Ray worker keeps the worker's). When a file cannot be written
        (a full disk, a folder turned read-only), the files written so far are removed (the history stays, for
        the curves), the run is recorded as failed with the reason, and StoreUnavailable says the same.
        """
        self.check_writable()
        run_dir = self._existing_run_dir(run_id)
        metrics = {"code_version": CODE_VERSION, **metrics, "schema_version": SCHEMA_VERSION, "status": "done",
                   "run_id": run_id}
        written: list[Path] = []

        def save(name: str, write: Callable[[Path], object]) -> None:
            write_atomic(run_dir / name, write)
            written.append(run_dir / name)

        try:
            if history is not None:
                disk.write_json(run_dir / "history.json", history)
            if arrays is not None:
                save("arrays.npz", lambda path: np.savez_compressed(path, **arrays))
            if weights is not None:
                save("weights.safetensors", lambda path: _save_weights(path, weights))
            disk.write_json(run_dir / "metrics.json", metrics)
            written.append(run_dir / "metrics.json")
        except OSError as err:
            for path in written:
                path.unlink(missing_ok=True)
            message = f"Could not save the results: {disk.os_reason(err)}. {disk.os_advice(err)}"
            self._update(run_id, status="failed", message=message)
            raise StoreUnavailable(message) from err
        self._update(run_id, status="done", message="", summary=disk.dumps(_summarise(metrics)))

    def import_finished(self, run_id: str, run: FinishedRun) -> None:
        """Record `run` (read from another store) as the result of this store's run `run_id`, like `finish`."""
        self.finish(run_id, run.metrics, run.arrays, run.history, run.weights)

    def fail(self, run_id: str, status: str, message: str, history: list[dict] | None = None) -> None:
        """Record a failed or cancelled run; its history is kept so the partial curves can still be drawn."""
        if status not in ENDED_STATUSES:
            raise ValueError(f"fail() takes status 'failed' or 'cancelled', not {status!r}")
        self.check_writable()
        run_dir = self._run_dir(run_id)
        if history is not None:
            try:
                disk.write_json(run_dir / "history.json", history)
            except OSError as err:  # the status matters more than the curves: record it even on a full disk
                warnings.warn(f"The history of run {run_id} could not be saved: {disk.os_reason(err)}.", stacklevel=2)
        self._update(run_id, status=status, message=message)

    def mark_interrupted(self) -> int:
        """Runs still queued or running whose owning process is gone become "interrupted"; returns how many.

        A read-only store is left as it is (its runs show the status they were last given).
        """
        if self.read_only:
            return 0
        active = self._query("SELECT * FROM runs WHERE status IN ('queued', 'running')")
        return self._interrupt([row for row in active
                                if not ownership.owner_alive(row["owner_host"], row["owner_pid"], row["owner_started"])])

    def _interrupt(self, orphans: list[sqlite3.Row]) -> int:
        interrupted = []
        with self._connect() as db:
            for row in orphans:
                # Unchanged updated_at: nobody claimed or advanced the run since it was read above.
                if db.execute(
                    "UPDATE runs SET status = 'interrupted', message = ?, updated_at = ?"
                    " WHERE run_id = ? AND updated_at = ?",
                    (INTERRUPTED_MESSAGE, time.time(), row["run_id"], row["updated_at"]),
                ).rowcount:
                    interrupted.append(row["run_id"])
        for run_id in interrupted:
            self._keep_status(run_id)
        return len(interrupted)

    def rebuild_index(self) -> int:
        """Add every run folder the index lacks, with the settings, status, message and owner its folder keeps;
        returns how many were added. A run stored before folders kept their status comes back done when its
        results are there, else interrupted. Rows the index has are left as they are."""
        self.check_writable()
        known = {row["run_id"] for row in self._query("SELECT run_id FROM runs")}
        rows = [_row_from_folder(path) for path in sorted(self.root.iterdir())
                if RUN_ID_PATTERN.fullmatch(path.name) and path.name not in known and path.is_dir()]
        with self._connect() as db:
            added = sum(_insert(db, row, "OR IGNORE") for row in rows)
        self.mark_interrupted()  # a rebuilt run whose process is gone
        return added

    # -- reading -------------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        return _record(self._row(run_id), self.root)

    def list(self, *, dataset: str | None = None, objective: str | None = None,
             status: str | None = None) -> list[RunRecord]:
        """Newest first. Never fails because of one run: a run this version cannot read is listed with status
        "unreadable" and message "unreadable: <reason>" (and only `status="unreadable"` selects it)."""
        if status is not None and status not in LISTED_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {LISTED_STATUSES}")
        filters = {"dataset": dataset, "objective": objective, "status": None if status == UNREADABLE else status}
        used = {column: value for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in used) or "1"
        rows = self._rows(f"SELECT * FROM runs WHERE {where} ORDER BY created_at DESC, rowid DESC",
                          tuple(used.values()))
        records = [_record(row, self.root) for row in rows]
        return records if status is None else [record for record in records if record.status == status]

    def metrics(self, run_id: str) -> dict:
        """metrics.json of a finished run; RunNotFound for runs without results, RunUnreadable when it cannot
        be read."""
        record = _record(self._row(run_id), self.root, check_results=False)
        self._check_readable(record)
        if record.status != "done":
            reason = f": {record.message}" if record.message else ""
            raise RunNotFound(f"Run {run_id} has no results yet: it is {record.status}{reason}.")
        metrics, problem = _results(self._run_dir(run_id))
        if metrics is None:
            raise RunUnreadable(_unreadable_message(run_id, problem))
        return metrics

    def arrays(self, run_id: str) -> dict[str, np.ndarray]:
        path = self.run_folder(run_id) / "arrays.npz"
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise RunUnreadable(_unreadable_file(run_id, path, err)) from err

    def history(self, run_id: str) -> list[dict]:
        path = self.run_folder(run_id) / "history.json"
        try:
            history = json.loads(path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as err:
            raise RunUnreadable(_unreadable_file(run_id, path, err)) from err
        if not isinstance(history, list):
            raise RunUnreadable(_unreadable_message(run_id, "history.json is corrupt (not a list)"))
        return history

    def weights_path(self, run_id: str) -> Path | None:
        """The run's tuned weights (None when it kept none); a file that is not whole safetensors raises
        RunUnreadable (only its header is read here)."""
        path = self.run_folder(run_id) / "weights.safetensors"
        if not path.exists():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            path.open("rb").close()  # safetensors reports a file it may not read as missing
            with safe_open(str(path), framework="numpy") as weights:
                weights.keys()
        except (OSError, SafetensorError) as err:
            raise RunUnreadable(_unreadable_file(run_id, path, err)) from err
        return path

    def finished_run(self, run_id: str) -> FinishedRun:
        """A finished run's files, whole, to import into another store (RunNotFound / RunUnreadable as above)."""
        metrics = self.metrics(run_id)
        weights_path = self.weights_path(run_id)
        weights = None
        if weights_path is not None:
            from safetensors.torch import load_file

            weights = load_file(str(weights_path))
        return FinishedRun(metrics, self.arrays(run_id), self.history(run_id), weights)

    # -- for the records kept beside the runs (wise_records.py, sequence_records.py) ------------------------

    def check_writable(self) -> None:
        """StoreUnavailable, saying what to do, when this process may not write the store."""
        if self.read_only:
            raise self._read_only_error()

    def run_folder(self, run_id: str) -> Path:
        """The folder of a known run that is not unreadable (it may be missing for a run that never finished)."""
        self._check_readable(self.get(run_id))
        return self._run_dir(run_id)

    # -- internals -----------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per call: safe across threads and processes; commits on success, then closes.
        Every SQLite failure leaves as StoreUnavailable saying what to do."""
        try:
            db = self._open_index()
        except sqlite3.Error as err:
            raise self._index_error(err) from err
        try:
            with db:
                yield db
        except sqlite3.Error as err:
            raise self._index_error(err) from err
        finally:
            db.close()

    def _open_index(self) -> sqlite3.Connection:
        if not self.read_only:
            db = sqlite3.connect(self._db_path, timeout=BUSY_TIMEOUT_S)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; keeps frequent progress writes cheap
            return db
        uri = self._db_path.resolve().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.OperationalError:
            # A WAL index needs a -shm file beside it, which a read-only folder cannot gain once the last
            # writer has gone: then nobody writes here, and the file can be read as it is.
            db.close()
            db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=BUSY_TIMEOUT_S)
        db.row_factory = sqlite3.Row
        return db

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        if self.read_only and not self._db_path.exists():
            return []  # a read-only folder that never had an index holds no runs
        with self._connect() as db:
            return db.execute(sql, params).fetchall()

    def _open_or_rebuild_index(self) -> None:
        """Create the index when missing. One that is empty while run folders exist (emptied, or made anew) is
        rebuilt from them; so is a corrupt one, which is kept beside it first (never on a full disk)."""
        try:
            empty = self._create_index()
        except IndexUnreadable as err:
            if not any(words in str(err.__cause__) for words in CORRUPT_INDEX):
                raise
            kept = set_index_aside(self._db_path, "corrupt")
            warnings.warn(f"The run index of {self.root} was corrupt ({err.__cause__}); it is kept as {kept.name} "
                          f"and was rebuilt from the run folders.", stacklevel=3)
            empty = self._create_index()
        if empty:
            self.rebuilt = self.rebuild_index()

    def _create_index(self) -> bool:
        """The index with its table; True when it holds no run."""
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            db.execute(SCHEMA)
            return db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None

    def _index_error(self, err: sqlite3.Error) -> StoreUnavailable:
        """The true cause, and an action that loses nothing (the runs live in their folders whatever the index)."""
        text = str(err)
        if "readonly" in text:
            return self._read_only_error()
        if "locked" in text or "busy" in text:
            return StoreUnavailable(f"The run index {self._db_path} stayed locked by another process for "
                                    f"{BUSY_TIMEOUT_S:.0f} s ({text}); try again.")
        if "full" in text or ("I/O" in text and _low_on_space(self.root)):
            return StoreUnavailable(f"The disk holding the run store {self.root} is full ({text}). Free some space "
                                    f"and try again; every run is safe in its folder, so leave index.sqlite where "
                                    f"it is.")
        if self._db_path.exists() and not os.access(self._db_path, os.R_OK):
            return StoreUnavailable(f"The run index {self._db_path} cannot be read here (permission denied). Ask the "
                                    f"store's owner to make it readable (chmod a+r), or point --store (or "
                                    f"$LDIFS_STORE) at a store of your own.")
        return IndexUnreadable(f"The run index {self._db_path} cannot be read ({text}); every run is safe in its "
                               f"folder. Rebuild the index from them with `python -m ldifs_core store rebuild-index "
                               f"--store {self.root}` (the unreadable file is kept beside it).")

    def _read_only_error(self) -> StoreUnavailable:
        return StoreUnavailable(f"The run store {self.root} is read-only here: its runs can be listed, shown and "
                                f"exported, not recorded. Point --store (or $LDIFS_STORE) at a folder you can write.")

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Rows of runs as they are now: one left queued or running by a process of this host that has gone (a
        CLI run killed with kill -9) is recorded interrupted first, so no page shows it waiting forever."""
        rows = self._query(sql, params)
        gone = [row for row in rows if row["status"] in ("queued", "running")
                and ownership.owner_gone(row["owner_host"], row["owner_pid"], row["owner_started"])]
        if gone and not self.read_only and self._interrupt(gone):
            rows = self._query(sql, params)
        return rows

    def _row(self, run_id: str) -> sqlite3.Row:
        rows = self._rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise self._not_found(run_id)
        return rows[0]

    def _check_readable(self, record: RunRecord) -> None:
        if record.status == UNREADABLE:
            raise RunUnreadable(_unreadable_message(record.run_id, record.message.removeprefix("unreadable: ")))

    def _update(self, run_id: str, **columns: object) -> None:
        self.check_writable()
        assignments = ", ".join(f"{column} = ?" for column in columns)
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE runs SET {assignments}, updated_at = ? WHERE run_id = ?",
                (*columns.values(), time.time(), run_id),
            )
        if cursor.rowcount == 0:
            raise self._not_found(run_id)
        if "status" in columns:
            self._keep_status(run_id)

    def _keep_status(self, run_id: str) -> None:
        """Copy the run's status row into its folder, for a rebuilt index to read back. Best effort on purpose:
        the index stays the truth, and a full disk must not stop a run's end from being recorded there."""
        rows = self._query(f"SELECT {', '.join(KEPT_COLUMNS)} FROM runs WHERE run_id = ?", (run_id,))
        run_dir = self._run_dir(run_id)
        if rows and run_dir.is_dir():
            try:
                disk.write_json(run_dir / STATUS_FILE, dict(rows[0]))
            except OSError:
                pass

    def _claim_run_dir(self) -> tuple[str, Path]:
        """mkdir is atomic, so two processes creating runs in the same second never share an id."""
        while True:
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            run_dir = self.root / run_id
            try:
                run_dir.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise StoreUnavailable(f"Could not start a run in {self.root}: {disk.os_reason(err)}. "
                                       f"{disk.os_advice(err)}") from err
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


# -- opening a store ------------------------------------------------------------------------------------


def _open_folder(root: Path) -> None:
    """The store's folder exists (created when missing) and can be read, or StoreUnavailable says what to do."""
    hint = "Point --store (or $LDIFS_STORE) at a folder"
    if root.exists() and not root.is_dir():
        raise StoreUnavailable(f"The run store {root} is a file, not a folder. {hint}; a missing one is created.")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreUnavailable(f"Could not create the run store {root}: {disk.os_reason(err)}. {hint} you can write.") \
            from err
    if not os.access(root, os.R_OK | os.X_OK):
        raise StoreUnavailable(f"The run store {root} cannot be read here (permission denied). {hint} you can read.")


def _can_write(root: Path, index: Path) -> bool:
    """Whether this process may write the folder and its index (SQLite also writes journal files beside it)."""
    return os.access(root, os.W_OK | os.X_OK) and (not index.exists() or os.access(index, os.W_OK))


def _low_on_space(root: Path) -> bool:
    try:
        return shutil.disk_usage(root).free < LOW_SPACE_BYTES
    except OSError:
        return False


def rebuild_index(root: str | Path | None = None) -> tuple[RunStore, int, Path | None]:
    """`store rebuild-index`: the store at `root` with every run folder in its index; returns it, how many runs were
    added, and where an index that could not be read was kept (None when it could be). A full disk, a lock or
    permissions are reported as such, and then the index is left as it is."""
    try:
        store, kept = RunStore(root), None
    except IndexUnreadable:
        kept = set_index_aside((Path(root) if root is not None else default_store_dir()) / "index.sqlite", "unreadable")
        store = RunStore(root)
    return store, store.rebuilt + store.rebuild_index(), kept


def set_index_aside(index: Path, why: str) -> Path:
    """Rename the index (and its journal files) to index.sqlite.<why>-<time>, where it stays; returns the new path.
    Nothing is lost: the runs live in their folders."""
    kept = index.with_name(f"{index.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        for suffix in ("-wal", "-shm", ""):
            journal = index.with_name(index.name + suffix)
            if journal.exists():
                journal.rename(kept.with_name(kept.name + suffix))
    except OSError as err:
        raise StoreUnavailable(f"Could not keep the unreadable run index aside: {disk.os_reason(err)}. "
                               f"{disk.os_advice(err)}") from err
    return kept


def _insert(db: sqlite3.Connection, row: dict, conflict: str) -> int:
    return db.execute(f"INSERT {conflict} INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                      tuple(row.values())).rowcount


def _row_from_folder(run_dir: Path) -> dict:
    """The index row of a run, read back from its folder (what a lost index held, less live progress)."""
    kept = _json_file(run_dir / STATUS_FILE)
    kept = kept if isinstance(kept, dict) else {}
    config_text = _text_file(run_dir / "config.json")
    try:
        config = json.loads(config_text)
    except ValueError:
        config = None  # kept as it is: the run shows as unreadable, saying its settings do not parse
    settings = config if isinstance(config, dict) else {}
    metrics = _json_file(run_dir / "metrics.json")
    status = str(kept.get("status", "interrupted"))
    if (run_dir / "metrics.json").exists():
        status = "done"  # results are written before the index says so
    message = str(kept.get("message", "")) if "status" in kept or status == "done" else REBUILT_MESSAGE
    created = kept.get("created_at")
    if not isinstance(created, (int, float)):
        created = time.mktime(time.strptime(run_dir.name[:15], "%Y%m%d-%H%M%S"))
    return {"run_id": run_dir.name, "config": config_text, "dataset": str(settings.get("dataset") or NO_TASK),
            "objective": str(settings.get("objective", "")), "model": str(settings.get("model") or EMBEDDED_MODEL),
            "status": status, "message": message, "created_at": created, "updated_at": time.time(),
            "summary": disk.dumps(_summarise(metrics) if isinstance(metrics, dict) else {}),
            **{column: kept.get(column) for column in ("owner_host", "owner_pid", "owner_started")}}


def _text_file(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return "null"


def _json_file(path: Path) -> object:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


# -- reading a run's row and results, whatever state they are in ----------------------------------------


def _record(row: sqlite3.Row, root: Path, check_results: bool = True) -> RunRecord:
    """The row as a RunRecord; never raises. A run whose settings or (when done) results this version cannot
    read gets status "unreadable" and the reason as its message."""
    config, problem = _config_of(row)
    status, message = row["status"], row["message"]
    if problem is None and status not in STORED_STATUSES:
        problem = f"its status '{status}' is unknown to this version"
    if problem is None and status == "done" and check_results:
        problem = _results_problem(root / row["run_id"])
    if problem is not None:
        status, message = UNREADABLE, f"unreadable: {problem}"
    return RunRecord(run_id=row["run_id"], config=config, status=status, message=message,
                     created_at=row["created_at"], updated_at=row["updated_at"],
                     progress=_json_object(row["progress"]), summary=_json_object(row["summary"]),
                     owner=f"process {row['owner_pid']} on {row['owner_host']}" if row["owner_pid"] else "")


def _config_of(row: sqlite3.Row) -> tuple[RunConfig, str | None]:
    """The run's settings and, when this version cannot trust them, why. Settings from another version are
    ignored with a warning (the index keeps them)."""
    if not RUN_ID_PATTERN.fullmatch(str(row["run_id"])):
        return _config_from_columns(row), "its id is not one this version makes"
    try:
        data = json.loads(row["config"])
    except (TypeError, ValueError) as err:
        return _config_from_columns(row), f"its settings do not parse ({err})"
    if not isinstance(data, dict):
        return _config_from_columns(row), "its settings are not a JSON object"
    unknown = RunConfig.unknown_keys(data)
    if unknown:
        warnings.warn(f"Run {row['run_id']} has settings from another version, ignored here: {', '.join(unknown)}.",
                      stacklevel=4)
    try:
        config = RunConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        return _config_from_columns(row), f"its settings do not parse ({err})"
    if config.objective not in RUN_OBJECTIVES:
        lam = config.lam if isinstance(config.lam, (int, float)) else 0.0  # keeps effective_lam defined
        return replace(config, lam=lam), f"its objective '{config.objective}' is unknown to this version"
    return config.with_lambda_resolved(STORED_DEFAULT_LAMBDA), None  # None: stored before λ was resolved


def _config_from_columns(row: sqlite3.Row) -> RunConfig:
    """What the index's own columns still tell about a run whose settings cannot be read."""
    objective = str(row["objective"])
    return RunConfig(dataset=str(row["dataset"]) or None, objective=objective,
                     lam=None if objective in DEFAULT_LAMBDA else 0.0,
                     model=None if row["model"] == EMBEDDED_MODEL else str(row["model"]))


def _json_object(text: object) -> dict:
    """Progress and summary are display-only: a broken one reads as empty instead of hiding the run."""
    try:
        value = json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# run folder -> (its metrics.json's identity, problem or None): a listing parses each results file once, and
# again only when it changes (results are written by atomic replace, which changes the identity).
_VERDICTS: dict[Path, tuple[tuple[int, int, int] | None, str | None]] = {}
_VERDICTS_LOCK = threading.Lock()


def _results_problem(run_dir: Path) -> str | None:
    """Why a finished run's metrics.json cannot be read, or None; parsed once per version of the file."""
    identity = _file_identity(run_dir / "metrics.json")
    with _VERDICTS_LOCK:
        known = _VERDICTS.get(run_dir)
    if known is not None and identity is not None and known[0] == identity:
        return known[1]
    return _results(run_dir)[1]


def _results(run_dir: Path) -> tuple[dict | None, str | None]:
    """(metrics, None) for a readable metrics.json of this version, else (None, why). Never raises."""
    path = run_dir / "metrics.json"
    identity = _file_identity(path)
    if identity is None:
        metrics, problem = None, ("metrics.json is missing" if run_dir.is_dir() else f"its folder {run_dir} is missing")
    else:
        metrics, problem = _parse_results(path)
    with _VERDICTS_LOCK:
        _VERDICTS[run_dir] = (identity, problem)
    return metrics, problem


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _parse_results(path: Path) -> tuple[dict | None, str | None]:
    try:
        metrics = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, "metrics.json is missing"
    except OSError as err:
        return None, f"metrics.json cannot be read ({err.strerror})"
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        return None, f"metrics.json is corrupt ({_shorten(str(err))})"
    if not isinstance(metrics, dict):
        return None, "metrics.json is corrupt (not a JSON object)"
    version = metrics.get("schema_version", 1)
    if version != SCHEMA_VERSION:
        return None, (f"metrics.json was written by another version of the lab (schema {version}; this one reads "
                      f"{SCHEMA_VERSION})")
    try:
        RunMetrics.from_json(metrics)
    except MetricsShapeError as err:
        return None, _shorten(str(err))
    return metrics, None


def _unreadable_message(run_id: str, problem: str | None) -> str:
    return (f"unreadable: {problem} (run {run_id}). Run it again to get its results; the other runs are not "
            f"affected.")


def _unreadable_file(run_id: str, path: Path, err: Exception) -> str:
    """Why a result file of a run could not be read: another user's file this one may not read is not corrupt."""
    if isinstance(err, PermissionError):
        return (f"unreadable: {path.name} cannot be read here (permission denied) (run {run_id}). Ask the store's "
                f"owner to make it readable (chmod a+r {path}), or run it again in a store of your own.")
    return _unreadable_message(run_id, f"{path.name} is corrupt ({err})")


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_status(status: str) -> None:
    if status not in STORED_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {STORED_STATUSES}")


def _summarise(metrics: dict) -> dict:
    summary = {}
    for key, path in SUMMARY_KEYS.items():
        value: object = metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            summary[key] = value
    return summary


# -- writing files ---------------------------------------------------------------------------------------


def _save_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
    try:
        safetensors.torch.save_file(tensors, str(path))
    except SafetensorError as err:  # its I/O failures (a full disk) are not OSErrors
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from err
