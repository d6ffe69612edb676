"""The lab as a package: `pip install .` gives a working `ldifs-lab` outside the checkout (the embedded model and the
concept bank inside the wheel), with the same pins as requirements.txt and the app's server settings."""
import os
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from ldifs_core import command, paths
from ldifs_core.paths import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def requirement_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_the_package_declares_every_pin_of_requirements_txt():
    project = PYPROJECT["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert sorted(declared) == sorted(requirement_lines((PROJECT_ROOT / "requirements.txt").read_text()))
    assert project["scripts"]["ldifs-lab"] == "ldifs_core.command:main"


def test_a_checkout_keeps_its_assets_and_runs_at_the_top_level():
    assert not paths.INSTALLED
    assert paths.ASSETS_DIR == PROJECT_ROOT / "assets" and paths.BANK_DIR == PROJECT_ROOT / "assets" / "bank"


def test_the_app_command_runs_the_app_as_the_checkouts_streamlit_config_does():
    config = tomllib.loads((PROJECT_ROOT / "app" / ".streamlit" / "config.toml").read_text())
    in_checkout = {f"{section}.{key}": str(value).lower() for section, table in config.items()
                   for key, value in table.items()}
    argv = command.app_command(8600)
    assert argv[1:5] == ["-m", "streamlit", "run", str(PROJECT_ROOT / "app" / "main.py")]
    flags = dict(flag[2:].split("=", 1) for flag in argv[5:])
    assert flags == {**in_checkout, "server.port": "8600"}


def test_help_lists_the_cli_subcommands_and_the_app(capsys):
    assert command.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("run", "sweep", "report")) and "app [--port PORT]" in out


def source_tree(destination):
    """The checkout's files as git would ship them (built elsewhere: a build writes build/ and *.egg-info)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return destination


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_outside_the_checkout(tmp_path):
    """Built without network or build isolation, installed without dependencies into a venv that reuses this one's
    packages (a .pth file), then run from an empty folder: no file of the checkout is reachable."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--no-cache-dir", "-q", "-w", str(wheels), str(source_tree(tmp_path / "src"))], check=True)
    wheel = next(wheels.glob("ldifs_lab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ldifs_core/assets/model/LabCLIP-ViT-28-p7.safetensors", "ldifs_core/assets/bank/mnist.npz",
            "ldifs_core/assets/lambda_grid.json", "app/main.py", "app/views/launch.py"} <= names
    assert not any(name.startswith(("tests/", "benchmarks/", "assets/")) for name in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "LDIFS_STORE")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    def lab(*argv, timeout=600):
        return subprocess.run(["ldifs-lab", *argv], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)

    where = subprocess.run([python, "-c", "import ldifs_core.paths as p; print(p.INSTALLED, p.ASSETS_DIR)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0] == "True" and where[1].startswith(str(venv))

    shown = lab("--help")
    assert shown.returncode == 0 and "app [--port PORT]" in shown.stdout, shown.stderr
    ran = lab("run", "--steps", "5", "--batch-size", "16", "--eval-datasets", "animals", "--no-umap", "--train-limit",
              "200", "--eval-limit", "100", "--probe-limit", "10")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert any((work / "runs").iterdir()), "the default store is ./runs in the folder it ran in"
    import torch

    from ldifs_core.models import load_model

    torch.save(load_model().clip.visual.state_dict(), work / "tower.pt")  # an "image tower only" file
    checked = lab("check", "--tuned", "tower.pt", "--task", "mnist", "--datasets", "animals", "--no-umap",
                  "--eval-limit", "30", "--probe-limit", "2")
    assert checked.returncode == 0 and "checked mnist" in checked.stdout, checked.stderr[-2000:]

    port = free_port()
    app = subprocess.Popen(["ldifs-lab", "app", "--port", str(port)], cwd=work, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 90, None
        while health != "ok" and time.monotonic() < deadline and app.poll() is None:
            time.sleep(1)
            try:
                health = urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2).read().decode()
            except OSError:
                pass
        assert health == "ok", app.stderr.read() if app.poll() is not None else "no answer within 90 s"
    finally:
        app.terminate()
        app.wait(timeout=30)
