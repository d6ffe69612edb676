"""The served app's Streamlit settings: localhost only, and no file watcher (it made many sessions slow)."""
from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_the_server_binds_to_localhost_and_watches_no_files():
    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["address"] == "localhost"
    assert (server["fileWatcherType"], server["runOnSave"]) == ("none", False)
