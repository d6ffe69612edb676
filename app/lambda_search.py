"""The λ finder started from the Runs & sweeps page: a `find-lambda` command in its own process (its trials are
ordinary runs of the store, so they show among the runs as they go; the finished search is kept in the store)."""
from __future__ import annotations

import subprocess
import sys

from ldifs_core.paths import PROJECT_ROOT


def start_search(store_root: str, dataset: str, tolerance: float, budget: int, ray_address: str = "") -> int:
    """Start `python -m ldifs_core find-lambda` detached from the page; returns its process id."""
    command = [sys.executable, "-m", "ldifs_core", "find-lambda", "--dataset", dataset, "--objective", "ldifs",
               "--tolerance", f"{tolerance:g}", "--budget", str(budget), "--store", store_root]
    if ray_address:
        command += ["--ray", ray_address]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True).pid
