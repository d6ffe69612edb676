"""WiSE-FT results kept beside a finished run: one JSON file per α in <run>/wise/, so a path of α values is
evaluated once and redrawn for free. Light on purpose (no torch): the app's pages read them on every draw."""
from __future__ import annotations

import errno
import json
import warnings

from ldifs_core import disk
from ldifs_core.config import SCHEMA_VERSION
from ldifs_core.errors import RunNotFound
from ldifs_core.store import RunStore

FOLDER = "wise"


def wise_results(store: RunStore, run_id: str) -> dict[float, dict]:
    """WiSE-FT metrics already computed for a run, by α ({} when none). Files that are unreadable or from another
    version are skipped, so their α is computed again."""
    folder = store.run_folder(run_id) / FOLDER
    results: dict[float, dict] = {}
    for path in sorted(folder.glob("alpha-*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            continue
        alpha, metrics = data.get("alpha"), data.get("metrics")
        if is_alpha(alpha) and isinstance(metrics, dict):
            results[float(alpha)] = metrics
    return results


def save_wise(store: RunStore, run_id: str, alpha: float, metrics: dict) -> bool:
    """Keep the WiSE-FT metrics of a finished run at `alpha` (atomically). Returns False, with a warning, when
    they cannot be written (read-only store, full disk): the result stays valid, it is only computed again."""
    if not is_alpha(alpha):
        raise ValueError(f"WiSE-FT α must be a number between 0 and 1, not {alpha!r}")
    run_dir = store.run_folder(run_id)
    status = store.get(run_id).status
    if status != "done":
        raise RunNotFound(f"Run {run_id} has no results yet: it is {status}; WiSE-FT needs a finished run.")
    path = run_dir / FOLDER / f"alpha-{float(alpha)!r}.json"
    try:
        if store.read_only:
            raise OSError(errno.EROFS, "the run store is read-only here", str(store.root))
        path.parent.mkdir(exist_ok=True)
        disk.write_json(path, {"schema_version": SCHEMA_VERSION, "alpha": float(alpha), "metrics": metrics})
    except OSError as err:
        warnings.warn(f"WiSE-FT α={alpha:g} of run {run_id} could not be cached ({disk.os_reason(err)}); it will be "
                      f"computed again next time.", stacklevel=2)
        return False
    return True


def is_alpha(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
