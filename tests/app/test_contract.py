"""The app's fixture runs (tests/app/sample_runs.py) are shaped exactly like what the real engine writes, so page
tests that pass on fixtures also pass on real runs: same nested keys, same value types, schema v2."""
from __future__ import annotations

import pytest

from ldifs_core.config import RunConfig
from ldifs_core.store import RunStore
from tests.app.sample_runs import SCHEMA_VERSION, add_finished_run

TINY = dict(steps=2, batch_size=16, eval_limit=60, probe_limit=10, train_limit=100, umap_points=20,
            eval_datasets=["animals"])


def shape(value, path: str = "metrics") -> object:
    """The structure of a JSON value: dicts keep their keys, lists the one shape all their items share,
    leaves their JSON type (bool, int, float, str, null)."""
    if isinstance(value, dict):
        return {key: shape(item, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        shapes = [shape(item, f"{path}[{i}]") for i, item in enumerate(value)]
        assert all(s == shapes[0] for s in shapes), f"{path}: items of different shapes"
        return ["list of", shapes[0] if shapes else "nothing"]
    return type(value).__name__


def differences(real, fake, path: str = "metrics") -> list[str]:
    """Where two shapes differ, as readable lines (empty when they match)."""
    if isinstance(real, dict) and isinstance(fake, dict):
        lines = [f"{path}.{key}: only in the real run" for key in real.keys() - fake.keys()]
        lines += [f"{path}.{key}: only in the fixture" for key in fake.keys() - real.keys()]
        for key in real.keys() & fake.keys():
            lines += differences(real[key], fake[key], f"{path}.{key}")
        return lines
    if isinstance(real, list) and isinstance(fake, list):
        if "nothing" in (real[1], fake[1]):
            return []  # an empty list fits any item shape
        return differences(real[1], fake[1], f"{path}[]")
    return [] if real == fake else [f"{path}: real {real}, fixture {fake}"]


def test_shape_sees_a_missing_key_and_a_changed_type():
    real = shape({"a": [{"n": 3, "ci": [1.0, 2.0]}], "b": "x"})
    assert differences(real, shape({"a": [{"n": 3.0, "ci": [1.0, 2.0]}], "b": "x"})) == ["metrics.a[].n: real int, fixture float"]
    assert differences(real, shape({"a": [{"n": 3, "ci": [1.0, 2.0]}]})) == ["metrics.b: only in the real run"]


@pytest.mark.slow
def test_fixture_runs_have_the_nested_keys_and_value_types_of_a_real_tiny_run(tmp_path):
    from ldifs_core.runner import execute

    store = RunStore(tmp_path)
    cfg = RunConfig(**TINY)
    real = store.metrics(execute(cfg, store))
    fake = store.metrics(add_finished_run(store, **TINY))
    assert real.get("schema_version") == fake["schema_version"] == SCHEMA_VERSION
    assert differences(shape(real), shape(fake)) == []
