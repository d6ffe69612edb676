"""Shared fixtures: small open_clip towers with random weights, an isolated run store, and the guard that no test
writes into the checkout."""
import os
import subprocess
from pathlib import Path

import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer


@pytest.fixture
def small_vit():
    torch.manual_seed(0)
    return VisionTransformer(image_size=16, patch_size=4, width=32, layers=4, heads=2, mlp_ratio=2.0,
                             output_dim=16).eval()


@pytest.fixture
def small_resnet():
    torch.manual_seed(0)
    return ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, image_size=64, width=8).eval()


def perturbed_clip(clip, image_tower: float, rest: float):
    """A copy of `clip` with seeded Gaussian noise added to every weight, `image_tower` times it on visual.*, `rest`
    times it elsewhere: a checkpoint "fine-tuned elsewhere" for the check tests."""
    import copy

    moved = copy.deepcopy(clip)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in moved.named_parameters():
            scale = image_tower if name.startswith("visual.") else rest
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return moved


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    path = tmp_path / "store"
    monkeypatch.setenv("LDIFS_STORE", str(path))
    return path


@pytest.fixture(autouse=True, scope="session")
def decoded_image_cache(tmp_path_factory):
    """Decoded images go to a cache of the test session's own, never the user's ~/.cache."""
    os.environ["LDIFS_CACHE_DIR"] = str(tmp_path_factory.mktemp("decoded"))


@pytest.fixture(autouse=True, scope="session")
def session_store(tmp_path_factory):
    """A test that forgets the store_dir fixture writes its runs to the session's own store, not ./runs."""
    os.environ["LDIFS_STORE"] = str(tmp_path_factory.mktemp("session-store"))


@pytest.fixture(scope="module")
def model():
    """A run's private copy of the embedded model (the loaded one is read-only)."""
    from ldifs_core.models import load_model

    return load_model().private_copy()


@pytest.fixture(scope="module")
def digits():
    """200 mnist training images: enough for a few real training steps."""
    from ldifs_core.datasets import load_split

    return load_split("mnist", "train").subset(200, seed=0)


CHECKOUT = Path(__file__).resolve().parents[1]
NOT_THE_CHECKOUTS = ("__pycache__", ".pytest_cache")  # what Python and pytest themselves keep there


def checkout_state() -> frozenset[str] | None:
    """The checkout's changed, untracked and ignored paths (git status), or None outside a git checkout."""
    try:
        # --ignored=matching lists ignored paths (./runs/ included) without walking ignored folders such as .venv:
        # a few milliseconds instead of about a hundred, paid once per test
        out = subprocess.run(["git", "status", "--porcelain", "--ignored=matching", "--untracked-files=normal"],
                             cwd=CHECKOUT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return frozenset(line for line in out.stdout.splitlines() if not any(n in line for n in NOT_THE_CHECKOUTS))


_after_last_test: list[frozenset[str] | None] = []


def pytest_sessionstart(session):
    _after_last_test[:] = [checkout_state()]


def pytest_collection_finish(session):
    """Importing the test modules must not write into the checkout either (a test module that imported a page
    script ran the page at import, and its job runner made ./runs/index.sqlite)."""
    before, after = _after_last_test[0], checkout_state()
    if before is not None and after is not None and after - before:
        pytest.exit(f"collecting the tests wrote into the checkout: {', '.join(sorted(after - before))}", returncode=1)


@pytest.fixture(autouse=True)
def checkout_untouched(request):
    """Fails the test that wrote into the checkout (tests write under tmp_path or the store_dir fixture), naming
    what it left there. One `git status` per test: each is compared with the state the test before left."""
    yield
    before, after = _after_last_test[0], checkout_state()
    _after_last_test[0] = after
    if before is None or after is None:
        return
    asked = ("docs/screenshots/",) if os.environ.get("LDIFS_UPDATE_SCREENSHOTS") == "1" else ()  # the e2e test's
    written = sorted(line for line in after - before if not any(path in line for path in asked))
    if written:
        pytest.fail(f"{request.node.nodeid} wrote into the checkout: {', '.join(written)}", pytrace=False)


# Per-test limits (pytest-timeout) by lane: the default in pyproject.toml holds for unit and AppTest tests.
LIMITS_S = {"e2e": 3600, "ray": 1800, "slow": 1800}


def pytest_collection_modifyitems(items):
    """A slow, ray or e2e test gets its lane's larger limit unless it sets its own `timeout` mark."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            limits = [limit for lane, limit in LIMITS_S.items() if item.get_closest_marker(lane)]
            if limits:
                item.add_marker(pytest.mark.timeout(max(limits)))
