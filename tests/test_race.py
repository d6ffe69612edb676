"""The base model is shared by every thread of the app: runs side by side must not see each other.

Reproduces the audit's race: two runs (or a run and a WiSE-FT evaluation) in two threads of one process
used to collect each other's tapped features through hooks on the one cached model.
"""
import threading

import pytest
import torch

from ldifs_core.config import RunConfig
from ldifs_core.runner import cached_model, execute
from ldifs_core.store import RunStore
from ldifs_core.wise import wise_ft_metrics
from tests.recording_hooks import RecordingHooks

SETTINGS = dict(steps=3, batch_size=16, train_limit=200, eval_limit=600, probe_limit=10, umap_points=0,
                eval_datasets=["animals", "fashion_mnist"])
RESULT_KEYS = ("downstream", "forgetting", "mean_zs_delta", "mean_lp_delta")


def results(store: RunStore, run_id: str) -> dict:
    record = store.get(run_id)
    assert record.status == "done", record.message
    metrics = store.metrics(run_id)
    return {key: metrics[key] for key in RESULT_KEYS}


def side_by_side(*jobs):
    """Start every job at once (a barrier lines up their evaluation phases) and collect what they return."""
    out, errors = [None] * len(jobs), []
    barrier = threading.Barrier(len(jobs))

    def work(i):
        try:
            out[i] = jobs[i](barrier)
        except BaseException as err:  # noqa: BLE001 - reported below, with the thread's error
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return out


def run_job(store, cfg):
    def job(barrier):
        def on_step(event):
            if event.step == event.total_steps:
                barrier.wait(timeout=120)  # both runs enter evaluation together

        return execute(cfg, store, hooks=RecordingHooks(on_step=on_step))

    return job


@pytest.mark.slow
def test_two_runs_in_two_threads_give_the_same_metrics_as_alone(store_dir):
    store = RunStore()
    ldifs, ce = RunConfig(objective="ldifs", **SETTINGS), RunConfig(objective="ce", seed=1, **SETTINGS)
    alone = [results(store, execute(cfg, store)) for cfg in (ldifs, ce)]
    together = side_by_side(run_job(store, ldifs), run_job(store, ce))
    assert [results(store, run_id) for run_id in together] == alone


@pytest.mark.slow
def test_a_wise_ft_evaluation_beside_a_run_changes_neither(store_dir):
    store = RunStore()
    cfg = RunConfig(objective="ce", **SETTINGS)
    finished = execute(cfg, store)
    alone_wise = wise_ft_metrics(store, finished, 0.5)
    alone_run = results(store, execute(cfg, store))

    def wise_job(barrier):
        barrier.wait(timeout=120)
        return wise_ft_metrics(store, finished, 0.5)

    run_id, wise = side_by_side(run_job(store, cfg), wise_job)
    assert results(store, run_id) == alone_run
    assert wise == alone_wise


@pytest.mark.slow
def test_runs_leave_the_shared_base_model_untouched(store_dir):
    base = cached_model(None, None)
    before = {k: v.clone() for k, v in base.clip.state_dict().items()}
    store = RunStore()
    side_by_side(run_job(store, RunConfig(objective="ldifs", **SETTINGS)),
                 run_job(store, RunConfig(objective="flyp", **SETTINGS)))
    for name, module in base.clip.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name or 'clip'}"
    for key, value in base.clip.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[key]), key
    assert not any(p.requires_grad for p in base.clip.parameters())


def test_a_private_copy_on_the_same_device_shares_the_weights_but_not_the_modules():
    """θ₀ costs its memory once per process, however many runs use it; hooks and modes stay each run's own."""
    from ldifs_core.ldifs import forward_with_taps

    base = cached_model(None, None)
    private = base.private_copy("cpu")
    for (name, shared), (_, own) in zip(base.clip.named_parameters(), private.clip.named_parameters()):
        assert own.data_ptr() == shared.data_ptr(), name
    forward_with_taps(private.clip.visual, torch.zeros(1, 3, base.image_size, base.image_size))  # no error
    assert private.clip.visual is not base.clip.visual


def test_tapping_the_shared_base_model_is_refused():
    from ldifs_core.ldifs import forward_with_taps

    base = cached_model(None, None)
    with pytest.raises(RuntimeError, match="read-only"):
        forward_with_taps(base.clip.visual, torch.zeros(1, 3, base.image_size, base.image_size))
