"""The served app's Streamlit settings: localhost only, no usage statistics, and no file watcher (it made many
sessions slow), however the app is started: `make run`, or `streamlit run /abs/path/app/main.py` from any folder
(the settings sit beside the script, where Streamlit looks whatever the working directory). A flag on the command
line still overrides them."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.app.conftest import MAIN

CONFIG = Path(MAIN).parent / ".streamlit" / "config.toml"
READ_CONFIG = """
import sys
from streamlit import config
config._main_script_path = sys.argv[1]  # what `streamlit run SCRIPT` sets before it reads the config files
config.get_config_options(force_reparse=True)
print(config.get_option("server.address"), config.get_option("browser.gatherUsageStats"))
"""


def test_the_server_binds_to_localhost_and_watches_no_files():
    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["address"] == "localhost"
    assert (server["fileWatcherType"], server["runOnSave"]) == ("none", False)


def test_started_from_another_folder_the_app_listens_on_localhost_and_sends_no_statistics(tmp_path):
    home = tmp_path / "home"  # without a ~/.streamlit/config.toml of the user's
    home.mkdir()
    out = subprocess.run([sys.executable, "-c", READ_CONFIG, MAIN], cwd=tmp_path, capture_output=True, text=True,
                         env={"HOME": str(home), "PATH": ""}, check=True)
    assert out.stdout.split() == ["localhost", "False"]
