"""Where the project's committed assets and the default run store live, and the one way files are written there."""
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
# A checkout keeps its assets at the top level; an installed wheel has them inside the package (setup.py maps them).
INSTALLED = (PACKAGE_DIR / "assets").is_dir()
ASSETS_DIR = PACKAGE_DIR / "assets" if INSTALLED else PROJECT_ROOT / "assets"
BANK_DIR = ASSETS_DIR / "bank"


def default_store_dir() -> Path:
    """The run store: $LDIFS_STORE if set, else ./runs beside the project (installed: in the working folder)."""
    return Path(os.environ.get("LDIFS_STORE", Path.cwd() / "runs" if INSTALLED else PROJECT_ROOT / "runs"))


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Readers see the old file or the whole new one. The temp name keeps the suffix (numpy appends .npz).
    The file gets the mode this process gives new files (its umask), whatever `write` did: safetensors makes its
    files 0600, which other users of a shared store cannot read. An OSError names the file being written, not its
    temp name."""
    temp = path.with_name(f".{uuid.uuid4().hex}.{path.name}")
    try:
        temp.touch(exist_ok=False)
        mode = stat.S_IMODE(temp.stat().st_mode)
        write(temp)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as err:
        if err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        temp.unlink(missing_ok=True)
