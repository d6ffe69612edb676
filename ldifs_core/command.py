"""The `ldifs-lab` command of an installed lab (and `python -m ldifs_core`): the CLI's subcommands, plus `app`,
which starts the Streamlit app."""
from __future__ import annotations

import argparse
import os
import sys

from ldifs_core import cli
from ldifs_core.paths import PROJECT_ROOT

# The app server's settings: what .streamlit/config.toml sets in a checkout, given as flags so an installed app
# (started from any folder, with no such file) runs the same way. Bound to localhost: the lab is a local tool.
STREAMLIT_SETTINGS = {
    "server.address": "localhost",
    "server.headless": "true",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "client.toolbarMode": "minimal",
    "browser.gatherUsageStats": "false",
}
APP_HELP = "app [--port PORT]: start the Streamlit app at http://localhost:PORT (8501 by default)"


def app_command(port: int) -> list[str]:
    """`streamlit run` on the app shipped beside ldifs_core (a checkout's app/, or the installed package)."""
    settings = [f"--{key}={value}" for key, value in STREAMLIT_SETTINGS.items()]
    return [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app" / "main.py"), f"--server.port={port}",
            *settings]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["app"]:
        parser = argparse.ArgumentParser(prog="ldifs-lab app", description=APP_HELP)
        parser.add_argument("--port", type=int, default=8501)
        command = app_command(parser.parse_args(argv[1:]).port)
        os.execv(command[0], command)  # Streamlit takes over this process: Ctrl-C stops it as it expects
    code = cli.main(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(f"\nAlso: {APP_HELP}")
    return code
