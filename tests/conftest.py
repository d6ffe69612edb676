"""Shared fixtures: small open_clip towers with random weights, and an isolated run store."""
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


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    path = tmp_path / "store"
    monkeypatch.setenv("LDIFS_STORE", str(path))
    return path


@pytest.fixture(autouse=True, scope="session")
def decoded_image_cache(tmp_path_factory):
    """Decoded images go to a cache of the test session's own, never the user's ~/.cache."""
    import os

    os.environ["LDIFS_CACHE_DIR"] = str(tmp_path_factory.mktemp("decoded"))


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
