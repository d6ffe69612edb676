"""LDIFS distance: the regulariser's definition, checked against a direct computation."""
import copy
import math

import pytest
import torch

from ldifs_core import ldifs_distance
from ldifs_core.ldifs import tap_modules


def perturbed(encoder, scale=0.05, seed=1):
    moved = copy.deepcopy(encoder)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return moved


def vit_taps_by_hand(vit, x):
    """Re-run open_clip's ViT forward step by step: ln_pre output, then the residual stream after each block."""
    x = vit.conv1(x).flatten(2).transpose(1, 2)
    cls = vit.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + vit.positional_embedding
    x = vit.ln_pre(x)
    taps = [x]
    for block in vit.transformer.resblocks:
        x = block(x)
        taps.append(x)
    return taps  # [B, tokens, channels] each (4 blocks, 4 taps -> every block)


def resnet_taps_by_hand(net, x):
    x = net.stem(x)
    taps = [x]
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = stage(x)
        taps.append(x)
    return [t.flatten(2).transpose(1, 2) for t in taps]  # [B, positions, channels]


def unit(vector):
    length = math.sqrt(sum(v * v for v in vector))
    return [v / (length + 1e-10) for v in vector]  # ReLU maps can hold all-zero vectors


def direct_distance(taps0, taps1, variant):
    """The paper's definition in plain Python, one sample at a time, with no tensor axes to get wrong.

    paper: every position's channel vector is made unit length; squared differences are summed over channels and
    averaged over positions. released: every channel's vector over positions is made unit length; squared
    differences are averaged over channels and over positions. Then the mean over layers.
    """
    batch = taps0[0].shape[0]
    per_sample = []
    for b in range(batch):
        layers = []
        for a_map, b_map in zip(taps0, taps1):
            a, c = a_map[b].tolist(), b_map[b].tolist()  # positions x channels, as nested lists
            positions, channels = len(a), len(a[0])
            if variant == "paper":
                total = 0.0
                for p in range(positions):
                    u, v = unit(a[p]), unit(c[p])
                    total += sum((x - y) ** 2 for x, y in zip(u, v))
                layers.append(total / positions)
            else:
                total = 0.0
                for ch in range(channels):
                    u = unit([a[p][ch] for p in range(positions)])
                    v = unit([c[p][ch] for p in range(positions)])
                    total += sum((x - y) ** 2 for x, y in zip(u, v))
                layers.append(total / (channels * positions))
        per_sample.append(sum(layers) / len(layers))
    return torch.tensor(per_sample)


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_ldifs_distance_equals_a_direct_computation_on_a_small_vit(small_vit, variant):
    tuned = perturbed(small_vit)
    x = torch.randn(3, 3, 16, 16)
    per_sample, per_layer = ldifs_distance(small_vit, tuned, x, taps=4, variant=variant)
    with torch.no_grad():
        expected = direct_distance(vit_taps_by_hand(small_vit, x), vit_taps_by_hand(tuned, x), variant)
    assert per_layer.shape == (5, 3)
    torch.testing.assert_close(per_sample.detach(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_ldifs_distance_equals_a_direct_computation_on_a_small_modified_resnet(small_resnet, variant):
    tuned = perturbed(small_resnet)
    x = torch.randn(2, 3, 64, 64)
    per_sample, per_layer = ldifs_distance(small_resnet, tuned, x, variant=variant)
    with torch.no_grad():
        expected = direct_distance(resnet_taps_by_hand(small_resnet, x), resnet_taps_by_hand(tuned, x), variant)
    assert per_layer.shape == (5, 2)
    torch.testing.assert_close(per_sample.detach(), expected, rtol=1e-4, atol=1e-6)


def test_ldifs_is_zero_for_identical_encoders(small_vit):
    per_sample, _ = ldifs_distance(small_vit, copy.deepcopy(small_vit), torch.randn(4, 3, 16, 16))
    assert torch.allclose(per_sample, torch.zeros(4), atol=1e-10)


def test_ldifs_grows_as_the_weights_move_further(small_vit):
    x = torch.randn(4, 3, 16, 16)
    distances = [ldifs_distance(small_vit, perturbed(small_vit, scale), x)[0].mean().item()
                 for scale in (0.01, 0.05, 0.2)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_gradients_reach_only_the_finetuned_encoder(small_vit):
    frozen, tuned = small_vit, perturbed(small_vit)
    frozen.requires_grad_(True)
    per_sample, _ = ldifs_distance(frozen, tuned, torch.randn(2, 3, 16, 16))
    per_sample.mean().backward()
    assert all(p.grad is None for p in frozen.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tuned.parameters())


def test_vit_b_32_style_taps_sit_after_blocks_3_6_9_12():
    from open_clip.transformer import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, width=16, layers=12, heads=2, mlp_ratio=1.0, output_dim=8)
    blocks = list(vit.transformer.resblocks)
    modules = tap_modules(vit, taps=4)
    assert modules[0] is vit.ln_pre
    assert [blocks.index(m) + 1 for m in modules[1:]] == [3, 6, 9, 12]


def test_unknown_encoder_types_are_refused_with_a_clear_message():
    with pytest.raises(TypeError, match="No LDIFS taps"):
        tap_modules(torch.nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("name, layers", [("ViT-B-32", 5), ("RN50", 5)])
def test_ldifs_distance_works_on_real_open_clip_architectures(name, layers):
    import open_clip

    torch.manual_seed(0)
    visual = open_clip.create_model(name, pretrained=None).visual.eval()
    tuned = perturbed(visual, scale=1e-3)
    per_sample, per_layer = ldifs_distance(visual, tuned, torch.randn(1, 3, 224, 224))
    assert per_layer.shape == (layers, 1) and torch.isfinite(per_sample).all() and per_sample.item() > 0
