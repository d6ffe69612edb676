"""A real process that starts runs in a store the way the CLI does, then waits to be killed (kill -9 leaves its
runs queued and running in the index, with nobody to finish them)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, time
from ldifs_core.config import RunConfig
from ldifs_core.store import RunStore
store = RunStore(sys.argv[1])
running = store.create(RunConfig())
store.set_status(running, "running")
print(running, store.create(RunConfig()), flush=True)
time.sleep(600)
"""


def start_cli_like_run(root: Path) -> tuple[subprocess.Popen, str, str]:
    """The process, its running run and its queued run (both recorded before this returns)."""
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).parents[1])
    running, queued = process.stdout.readline().split()
    return process, running, queued
