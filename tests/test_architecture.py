"""The core is a plain library: nothing in ldifs_core may depend on the UI."""
import re

from ldifs_core.paths import PROJECT_ROOT

STREAMLIT_IMPORT = re.compile(r"^\s*(import\s+streamlit|from\s+streamlit)", re.MULTILINE)


def test_ldifs_core_never_imports_streamlit():
    offenders = [str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "ldifs_core").rglob("*.py")
                 if STREAMLIT_IMPORT.search(p.read_text())]
    assert offenders == []


def test_importing_the_core_does_not_load_streamlit():
    import subprocess
    import sys

    code = "import sys, ldifs_core.runner, ldifs_core.cli; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_listing_and_labelling_datasets_does_not_import_torch():
    """The Runs and Launch pages list every dataset on each draw: a fresh server's first sessions must not wait
    the seconds torch and torchvision take to import (the worker imports them when a run needs them)."""
    import subprocess
    import sys

    code = ("import sys; from ldifs_core.datasets import known_datasets; from app import launch_checks; "
            "[launch_checks.dataset_label(name) for name in known_datasets()]; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "False"
