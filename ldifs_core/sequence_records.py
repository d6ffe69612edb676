"""Sequence records: one JSON file per sequence in the store's sequences/ folder, linking its stage runs
(ordinary runs of the store) and keeping its forgetting matrix. What a record holds is sequence.py's business;
this module only keeps it safe. Light on purpose (no torch): the app's Continual page reads them."""
from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

from ldifs_core import disk
from ldifs_core.errors import RunNotFound, RunUnreadable, StoreUnavailable
from ldifs_core.store import RunStore

SEQUENCE_ID_PATTERN = re.compile(r"seq-\d{8}-\d{6}-[0-9a-f]{6}")
FOLDER = "sequences"


def create_sequence(store: RunStore, record: dict) -> str:
    """Save a new sequence record under a fresh id (claimed atomically, like a run id); returns the id."""
    store.check_writable()
    folder = store.root / FOLDER
    try:
        folder.mkdir(exist_ok=True)
        while True:
            sequence_id = f"seq-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            try:
                (folder / f"{sequence_id}.json").open("x").close()
                break
            except FileExistsError:
                continue
        disk.write_json(folder / f"{sequence_id}.json", {**record, "sequence_id": sequence_id})
    except OSError as err:
        raise StoreUnavailable(f"Could not record a sequence in {store.root}: {disk.os_reason(err)}. "
                               f"{disk.os_advice(err)}") from err
    return sequence_id


def save_sequence(store: RunStore, sequence_id: str, record: dict) -> None:
    store.check_writable()
    try:
        disk.write_json(_path(store, sequence_id), {**record, "sequence_id": sequence_id})
    except OSError as err:
        raise StoreUnavailable(f"Could not save sequence {sequence_id}: {disk.os_reason(err)}. "
                               f"{disk.os_advice(err)}") from err


def read_sequence(store: RunStore, sequence_id: str) -> dict:
    """A sequence's record; RunNotFound for an unknown id, RunUnreadable for a damaged file."""
    path = _path(store, sequence_id)
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunNotFound(f"No sequence '{sequence_id}' in {store.root}. `python -m ldifs_core sequence` prints "
                          f"the id of each sequence it runs, and `python -m ldifs_core list` shows the runs of every "
                          f"stage; check the id or give --store.") from None
    except (OSError, ValueError) as err:
        raise RunUnreadable(f"unreadable: the record of sequence {sequence_id} cannot be read ({err}).") from None
    if not isinstance(record, dict):
        raise RunUnreadable(f"unreadable: the record of sequence {sequence_id} is not a JSON object.")
    return record


def sequence_ids(store: RunStore) -> list[str]:
    """Every sequence of the store, newest first."""
    folder = store.root / FOLDER
    names = [path.stem for path in folder.glob("seq-*.json")] if folder.is_dir() else []
    return sorted((name for name in names if SEQUENCE_ID_PATTERN.fullmatch(name)), reverse=True)


def _path(store: RunStore, sequence_id: str) -> Path:
    if not SEQUENCE_ID_PATTERN.fullmatch(sequence_id):
        raise RunNotFound(f"'{sequence_id}' is not a sequence id (they look like seq-20261129-081500-a1b2c3).")
    return store.root / FOLDER / f"{sequence_id}.json"
