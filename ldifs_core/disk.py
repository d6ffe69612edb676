"""The run store's JSON files on disk, and what to tell a user when the disk refuses one (shared by the run
index, the WiSE-FT records and the sequence records)."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np

from ldifs_core.paths import write_atomic


def dumps(value: object) -> str:
    """JSON that also takes the numpy scalars and arrays metrics tend to contain."""
    return json.dumps(value, default=_jsonable)


def _jsonable(value: object) -> object:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: Path, value: object) -> None:
    text = dumps(value)
    write_atomic(path, lambda temp: temp.write_text(text))


def os_reason(err: OSError) -> str:
    reason = err.strerror or str(err)
    return f"{reason} ({err.filename})" if err.filename else reason


def os_advice(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "Free some space and run it again."
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "Make the run store writable (or point --store at another folder) and run it again."
    return "Check the disk and run it again."
