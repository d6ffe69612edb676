"""A drawn test image's nearest neighbours before and after fine-tuning, and the PCA the drift picture offers beside
its UMAP, both from the features a run keeps for the drawn points."""
import numpy as np

from ldifs_core.drift_records import PCA, UMAP, features_key, joint_pca, nearest_rows, neighbours, projection

DATASET = "animals"


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def drawn(pre, post, ids, labels) -> dict[str, np.ndarray]:
    return {f"umap_ids/{DATASET}": np.asarray(ids), f"umap_labels/{DATASET}": np.asarray(labels),
            f"umap_pre/{DATASET}": np.zeros((len(ids), 2), np.float32),
            f"umap_post/{DATASET}": np.ones((len(ids), 2), np.float32),
            features_key("pre", DATASET): unit(pre).astype(np.float16),
            features_key("post", DATASET): unit(post).astype(np.float16)}


def test_nearest_rows_are_the_most_similar_others_most_similar_first_ties_to_the_lower_row():
    features = unit([[1, 0], [0.6, 0.8], [1, 0.1], [-1, 0], [0.6, 0.8], [0.99, 0.14]])
    rows, similarities = nearest_rows(features, 0, 4)
    assert rows.tolist() == [2, 5, 1, 4]  # itself left out; 1 and 4 are the same point: the lower row first
    assert similarities[0] > similarities[1] > similarities[2] == similarities[3]
    assert nearest_rows(features, 0, 10)[0].tolist() == [2, 5, 1, 4, 3]  # never more than the others


def test_an_image_that_moved_to_another_concept_has_that_concepts_images_as_neighbours_after():
    # image 30 starts among the cats (label 0) and ends among the dogs (label 1)
    pre = [[1, 0, 0], [0.95, 0.3, 0], [0.9, 0.4, 0.1], [0, 1, 0], [0.1, 1, 0], [0.98, 0.2, 0]]
    post = [[1, 0, 0], [0.95, 0.3, 0], [0.9, 0.4, 0.1], [0, 1, 0], [0.1, 1, 0], [0.08, 1, 0]]
    ids, labels = [3, 7, 11, 20, 25, 30], [0, 0, 0, 1, 1, 0]
    found = neighbours(drawn(pre, post, ids, labels), DATASET, 30, k=2)
    assert [(n.position, n.label) for n in found["before"]] == [(7, 0), (3, 0)]
    assert [(n.position, n.label) for n in found["after"]] == [(25, 1), (20, 1)]
    assert all(-1 <= n.similarity <= 1 for n in found["before"] + found["after"])


def test_neighbours_need_the_features_of_this_version_and_a_drawn_image():
    arrays = drawn(np.eye(3), np.eye(3), [1, 2, 3], [0, 1, 2])
    assert neighbours(arrays, DATASET, 4) is None  # not among the drawn points
    old_run = {key: value for key, value in arrays.items() if not key.startswith("features_")}
    assert neighbours(old_run, DATASET, 1) is None
    assert projection(old_run, DATASET, PCA) is None
    assert projection(old_run, DATASET, UMAP)[0].shape == (3, 2)


def test_the_joint_pca_gives_two_deterministic_coordinates_per_point_along_the_largest_spread():
    rng = np.random.default_rng(0)
    pre = rng.normal(size=(50, 16)) * np.r_[10.0, 5.0, np.ones(14) * 0.1]  # spread along the first two axes
    post = pre + rng.normal(scale=0.1, size=pre.shape)
    first, then = joint_pca(pre, post)
    assert first.shape == then.shape == (50, 2) and first.dtype == np.float32
    again = joint_pca(pre.copy(), post.copy())
    assert np.array_equal(again[0], first) and np.array_equal(again[1], then)
    flipped = joint_pca(-pre, -post)  # the same cloud mirrored: the sign rule gives mirrored axes, not a jumble
    assert np.allclose(np.abs(flipped[0]), np.abs(first), atol=1e-4)
    assert np.corrcoef(first[:, 0], pre[:, 0])[0, 1] ** 2 > 0.99  # the widest axis comes first
    assert np.abs(then - first).max() < 1.0  # post stays by pre when features barely moved


def test_pca_of_a_run_is_drawn_from_its_kept_features():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6, 4))
    arrays = drawn(features, features + 0.01, [0, 1, 2, 3, 4, 5], [0, 1, 0, 1, 0, 1])
    pre, post = projection(arrays, DATASET, PCA)
    assert pre.shape == post.shape == (6, 2)
