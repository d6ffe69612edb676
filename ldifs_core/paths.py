"""Where the project's committed assets and the default run store live."""
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
BANK_DIR = ASSETS_DIR / "bank"


def default_store_dir() -> Path:
    """The run store: $LDIFS_STORE if set, else ./runs beside the project."""
    return Path(os.environ.get("LDIFS_STORE", PROJECT_ROOT / "runs"))
