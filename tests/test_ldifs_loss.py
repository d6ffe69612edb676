"""LDIFSLoss, the public API for LDIFS in a user's own loop: the lab's distance on a frozen copy, for open_clip towers
and for any module given the names of the submodules to tap."""
import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from ldifs_core import LDIFSLoss, ldifs_distance
from ldifs_core.models import load_model
from ldifs_core.paths import PROJECT_ROOT
from test_ldifs import perturbed


@pytest.mark.parametrize("tower", ["small_vit", "small_resnet"])
@pytest.mark.parametrize("variant", ["paper", "released"])
def test_equals_the_labs_distance_for_open_clip_towers_and_returns_the_tuned_output(tower, variant, request):
    base = request.getfixturevalue(tower)
    size = base.image_size[0] if isinstance(base.image_size, tuple) else base.image_size
    images = torch.randn(3, 3, size, size)
    ldifs = LDIFSLoss(base, taps=4, variant=variant, reduction="none")
    tuned = perturbed(base)
    output, distance = ldifs(tuned, images)
    expected, _ = ldifs_distance(base, tuned, images, taps=4, variant=variant)
    torch.testing.assert_close(distance, expected)
    torch.testing.assert_close(output, tuned(images))


def test_the_frozen_copy_keeps_the_weights_it_was_built_from_while_the_encoder_trains(small_vit):
    images = torch.randn(4, 3, 16, 16)
    ldifs = LDIFSLoss(small_vit)
    _, before = ldifs(small_vit, images)
    assert before.item() < 1e-10
    optimizer = torch.optim.SGD(small_vit.parameters(), lr=0.5)
    features, reg = ldifs(small_vit, images)
    (features.pow(2).sum() + reg).backward()
    optimizer.step()
    _, after = ldifs(small_vit, images)
    assert after.item() > 0 and not any(p.requires_grad for p in ldifs.frozen.parameters())
    assert not ldifs.train().frozen.training, "the frozen copy stays in eval mode"


def test_gradient_flows_into_the_tuned_encoder_only(small_vit):
    ldifs = LDIFSLoss(small_vit)
    tuned = perturbed(small_vit)
    ldifs(tuned, torch.randn(2, 3, 16, 16))[1].backward()
    assert all(p.grad is not None for p in tuned.transformer.parameters())
    assert all(p.grad is None for p in ldifs.frozen.parameters())


def test_taps_named_groups_as_in_the_lab(small_vit):
    images = torch.randn(2, 3, 16, 16)
    tuned = perturbed(small_vit)
    _, distance = LDIFSLoss(small_vit, taps="stem+last")(tuned, images)
    expected, per_layer = ldifs_distance(small_vit, tuned, images, taps="stem+last")
    assert per_layer.shape[0] == 2
    torch.testing.assert_close(distance, expected.mean())


def test_any_module_given_the_names_of_the_submodules_to_tap():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(5))
    images = torch.randn(2, 3, 8, 8)
    encoder(images)
    ldifs = LDIFSLoss(encoder, taps=["0", "2", "4"])
    tuned = perturbed(encoder)
    output, distance = ldifs(tuned, images)

    def positions(t):  # [B, C, H, W] -> [B, H*W, C] unit vectors; [B, D] -> one position
        t = t.flatten(2).transpose(1, 2) if t.dim() == 4 else t.unsqueeze(1)
        return t / (t.norm(dim=2, keepdim=True) + 1e-10)

    def taps(net):
        a = net[0](images)
        b = net[2](net[1](a))
        return [a, b, net(images)]

    with torch.no_grad():
        by_hand = torch.stack([(positions(t1) - positions(t0)).pow(2).sum(2).mean(1)
                               for t0, t1 in zip(taps(encoder), taps(tuned))]).mean()
    torch.testing.assert_close(distance.detach(), by_hand)
    torch.testing.assert_close(output, tuned(images))
    assert not tuned[0]._forward_hooks and not ldifs.frozen[0]._forward_hooks, "hooks last one forward"


def test_a_lab_loaded_shared_tower_can_be_the_starting_point():
    """The lab's loaded models are read-only (untappable); the frozen copy is the loss's own."""
    visual = load_model().clip.visual
    ldifs = LDIFSLoss(visual)
    tuned = copy.deepcopy(ldifs.frozen)
    assert ldifs(tuned, torch.randn(2, 3, 28, 28))[1].item() < 1e-10


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"taps": ["no_such_layer"]}, "has no submodule 'no_such_layer' to tap; it has 0, 1"),
    ({"variant": "fast"}, "unknown LDIFS variant 'fast'"),
    ({"reduction": "sum"}, "unknown reduction 'sum'"),
])
def test_bad_arguments_are_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LDIFSLoss(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), **kwargs)


def test_a_module_without_known_taps_asks_for_their_names():
    with pytest.raises(TypeError, match="give the names of the submodules to tap"):
        LDIFSLoss(nn.Sequential(nn.Linear(2, 2)))


def test_importing_the_package_does_not_load_torch_until_the_loss_is_used():
    code = "import sys, ldifs_core; print('torch' in sys.modules); ldifs_core.LDIFSLoss; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.split() == ["False", "True"]
