"""Feature drift between the pre-trained and the fine-tuned image tower.

Numbers that do not depend on any projection (class-centroid shift, k-NN overlap, each image's displacement
relative to its neighbourhood) plus a joint 2-D UMAP of both feature sets, fitted together so pre and post
positions are comparable.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ldifs_core.encoding import autocast_for
from ldifs_core.ldifs import distance_from_taps, forward_with_taps


@torch.inference_mode()
def paired_features(base_visual, tuned_visuals: Sequence[torch.nn.Module], inputs_fn, n: int, taps: int, variant: str,
                    batch_size: int = 256, on_batch: Callable[[int], None] | None = None):
    """Pooled, normalised features [N, D] of θ₀'s tower and of each tuned tower (float32 on the CPU, computed in
    the same precision as every other evaluation feature), and each tuned tower's mean per-layer LDIFS distance
    [L] to θ₀. Each batch goes through θ₀'s tower once, whatever the number of tuned towers. `on_batch` hears how
    many images each batch encoded, every tower counted."""
    pre, posts, per_layers = [], [[] for _ in tuned_visuals], [[] for _ in tuned_visuals]
    for start in range(0, n, batch_size):
        x = inputs_fn(start, start + batch_size)
        with autocast_for(x.device):
            pooled0, taps0 = forward_with_taps(base_visual, x, taps)
        pre.append(F.normalize(pooled0.float(), dim=-1).cpu())
        for tuned_visual, post, per_layer in zip(tuned_visuals, posts, per_layers):
            with autocast_for(x.device):
                pooled1, taps1 = forward_with_taps(tuned_visual, x, taps)
            post.append(F.normalize(pooled1.float(), dim=-1).cpu())
            per_layer.append(distance_from_taps(taps0, taps1, variant).sum(dim=1).cpu())
        if on_batch is not None:
            on_batch((1 + len(tuned_visuals)) * len(x))
    return (torch.cat(pre), [torch.cat(post) for post in posts],
            [torch.stack(per_layer).sum(dim=0) / n for per_layer in per_layers])


def centroid_shift(pre: torch.Tensor, post: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of 1 - cos(class centroid before, after): 0 means the concepts stayed put."""
    shifts = []
    for c in labels.unique():
        members = labels == c
        shifts.append(1 - F.cosine_similarity(pre[members].mean(0), post[members].mean(0), dim=0).item())
    return float(np.mean(shifts))


def nearest_neighbours(x: torch.Tensor, k: int, include_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine k-NN (similarities, indices) of unit vectors: one matrix product for a few thousand points."""
    sims = x @ x.T
    if not include_self:
        sims.fill_diagonal_(-float("inf"))
    return sims.topk(k, dim=1)


def knn_overlap(pre: torch.Tensor, post: torch.Tensor, k: int = 10) -> float:
    """Average fraction of each point's k nearest neighbours that are the same before and after."""
    k = min(k, len(pre) - 1)
    if k < 1:
        return 1.0
    a, b = nearest_neighbours(pre, k).indices, nearest_neighbours(post, k).indices
    same = (a.unsqueeze(2) == b.unsqueeze(1)).any(dim=2).float().mean(dim=1)
    return float(same.mean())


def relative_displacement(pre: torch.Tensor, post: torch.Tensor, k: int = 10) -> torch.Tensor:
    """How far each image's feature moved, in units of its own neighbourhood [N]: ||post_i - pre_i|| divided by
    the mean distance from pre_i to its k nearest other pre-trained features (unit vectors). Above 1, an image
    moved further than its neighbours were from it: it left the neighbourhood it had before fine-tuning."""
    moved = (post - pre).norm(dim=1)
    k = min(k, len(pre) - 1)
    if k < 1:
        return torch.full_like(moved, float("nan"))
    neighbour_sims = nearest_neighbours(pre, k).values
    neighbourhood = (2 - 2 * neighbour_sims).clamp(min=0).sqrt().mean(dim=1)  # |a - b|² = 2 - 2 cos for unit vectors
    return moved / neighbourhood.clamp(min=1e-6)


@lru_cache(maxsize=1)
def cache_umap_kernels() -> None:
    """umap-learn leaves several numba kernels uncached, so every new process spent ~10 s recompiling them.
    Turning numba's on-disk cache on for all of them makes that a one-time cost per machine."""
    import umap.distances
    import umap.layouts
    import umap.umap_
    import umap.utils
    from numba.core.registry import CPUDispatcher

    for module in (umap.umap_, umap.layouts, umap.utils, umap.distances):
        for kernel in vars(module).values():
            if isinstance(kernel, CPUDispatcher):
                kernel.enable_caching()


def joint_umap(pre: np.ndarray, post: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One UMAP fitted on pre and post features together; returns their 2-D positions."""
    import umap  # imported lazily: numba and pynndescent cost seconds at start-up

    cache_umap_kernels()
    points = np.concatenate([pre, post]).astype(np.float32)
    # Exact neighbours by one matrix product replace UMAP's approximate search (a third of the time);
    # PCA init and 150 epochs give the same picture as the defaults here, faster.
    n_neighbors = min(15, len(points) - 1)
    sims, indices = nearest_neighbours(F.normalize(torch.from_numpy(points), dim=1), n_neighbors, include_self=True)
    knn = (indices.numpy().astype(np.int32), (1 - sims).clamp(min=0).numpy(), None)
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, metric="cosine", random_state=seed, n_epochs=150,
                        init="pca", n_jobs=1, precomputed_knn=knn)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")  # we never call transform()
        coords = reducer.fit_transform(points)
    return coords[: len(pre)], coords[len(pre):]


def warm_umap() -> None:
    """Compile (and cache on disk) UMAP's kernels so that no run pays for it: the app calls this at start-up."""
    rng = np.random.default_rng(0)
    joint_umap(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)))
