"""Zero-shot heads of loaded weights are computed once per machine: a warm start of a ViT-B-32 run on a CPU would
otherwise spend most of its time re-encoding the same class prompts."""
import os

import pytest
import torch

from ldifs_core import encoding
from ldifs_core.encoding import HEADS, zero_shot_head
from ldifs_core.models import load_model, weights_identity

CLASSES, TEMPLATES = ["cat", "dog", "boat"], ["a photo of a {}.", "a drawing of a {}."]


@pytest.fixture
def heads_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LDIFS_CACHE_DIR", str(tmp_path))
    HEADS.clear()
    yield tmp_path / "text_heads"
    HEADS.clear()


@pytest.fixture
def text_tower_calls(monkeypatch):
    calls = []
    compute = encoding._text_head
    monkeypatch.setattr(encoding, "_text_head", lambda *args: calls.append(args[0]) or compute(*args))
    return calls


def test_a_head_is_computed_once_then_read_from_disk_by_a_new_process(heads_dir, text_tower_calls):
    model = load_model()
    first = zero_shot_head(model, CLASSES, TEMPLATES)
    assert len(text_tower_calls) == 1 and len(list(heads_dir.glob("*.pt"))) == 1
    HEADS.clear()  # what a new process starts with
    again = zero_shot_head(model.private_copy(), CLASSES, TEMPLATES)
    assert len(text_tower_calls) == 1
    torch.testing.assert_close(again, first)


def test_other_prompts_get_their_own_head(heads_dir, text_tower_calls):
    model = load_model()
    zero_shot_head(model, CLASSES, TEMPLATES)
    zero_shot_head(model, CLASSES, TEMPLATES[:1])
    zero_shot_head(model, CLASSES[:2], TEMPLATES)
    assert len(text_tower_calls) == 3


def test_tuned_or_mixed_weights_are_never_looked_up(heads_dir, text_tower_calls):
    model = load_model()
    zero_shot_head(model, CLASSES, TEMPLATES)
    tuned = model.with_clip(model.private_copy().clip)
    assert tuned.weights_id is None
    zero_shot_head(tuned, CLASSES, TEMPLATES)
    assert len(text_tower_calls) == 2


def test_a_rewritten_checkpoint_is_new_weights(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"x" * 10)
    before = weights_identity("ViT-B-32", str(checkpoint))
    checkpoint.write_bytes(b"y" * 11)
    os.utime(checkpoint, ns=(1, 1))
    assert weights_identity("ViT-B-32", str(checkpoint)) != before


@pytest.mark.parametrize("damage", [
    pytest.param(lambda stored, head: stored.write_bytes(stored.read_bytes()[:20]), id="truncated"),
    pytest.param(lambda stored, head: torch.save(torch.full_like(head, float("nan")), stored), id="nan"),
    pytest.param(lambda stored, head: torch.save(head[:, :-1].contiguous(), stored), id="narrower"),
    pytest.param(lambda stored, head: torch.save(torch.cat([head, head], dim=1), stored), id="wider"),
    pytest.param(lambda stored, head: torch.save(head[:-1].clone(), stored), id="a class short"),
    pytest.param(lambda stored, head: torch.save({"head": head}, stored), id="not a tensor"),
])
def test_a_damaged_head_on_disk_is_discarded_and_computed_again_with_one_warning(heads_dir, text_tower_calls,
                                                                                 damage):
    model = load_model()
    expected = zero_shot_head(model, CLASSES, TEMPLATES)
    (stored,) = heads_dir.glob("*.pt")
    damage(stored, expected)
    HEADS.clear()
    with pytest.warns(UserWarning, match="cached zero-shot head .* damaged .* computing it again") as caught:
        torch.testing.assert_close(zero_shot_head(model, CLASSES, TEMPLATES), expected)
    assert len(caught) == 1 and len(text_tower_calls) == 2
    HEADS.clear()
    torch.testing.assert_close(torch.load(stored, weights_only=True), expected)  # the entry was rewritten whole
    torch.testing.assert_close(zero_shot_head(model, CLASSES, TEMPLATES), expected)
    assert len(text_tower_calls) == 2


def test_callers_get_their_own_copy(heads_dir):
    model = load_model()
    head = zero_shot_head(model, CLASSES, TEMPLATES)
    kept = head.clone()
    head.zero_()
    torch.testing.assert_close(zero_shot_head(model, CLASSES, TEMPLATES), kept)
