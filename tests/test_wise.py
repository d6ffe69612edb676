"""A WiSE-FT path measures its mixes together: θ₀'s side once, each mix's tower once per image, with the same
numbers as each mix evaluated alone by the ordinary evaluation, and a cancel heard before each dataset."""
import pytest

from ldifs_core.config import RunConfig
from ldifs_core.errors import RunCancelled
from ldifs_core.evaluate import forgetting_report
from ldifs_core.objectives import OBJECTIVE_TYPES
from ldifs_core.runner import execute, prepare
from ldifs_core.store import RunStore
from ldifs_core.weights import run_weights, tuned_from_weights
from ldifs_core.wise import evaluate_mixes, mix_weights, wise_ft_path
from ldifs_core.wise_records import wise_results
from tests.recording_hooks import RecordingHooks

pytestmark = pytest.mark.slow  # a real run, then its mixes evaluated several times

TINY = dict(steps=4, batch_size=16, eval_limit=120, probe_limit=12, umap_points=0, train_limit=200,
            eval_datasets=["animals", "fashion_mnist"])
ALPHAS = [0.0, 0.4, 1.0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("store"))
    return store, execute(RunConfig(objective="ce", **TINY), store)


def alone(store: RunStore, run_id: str, alpha: float) -> dict:
    """One mix evaluated on its own by the ordinary evaluation of a run (as every α was before paths)."""
    cfg, weights = run_weights(store, run_id)
    run = prepare(cfg)
    tuned, final, initial = tuned_from_weights(run.base, weights)
    mixed = mix_weights(run.base.clip, tuned, alpha)
    head = OBJECTIVE_TYPES[cfg.objective].mixed_head(run.base, mixed, initial, final, alpha, run.test)
    report, _ = forgetting_report(cfg, run.base, mixed.visual, head, run.test, run.others, with_umap=False)
    return {"run_id": run_id, "alpha": alpha, **report}


def test_a_path_gives_every_alpha_the_numbers_of_its_own_evaluation(finished):
    store, run_id = finished
    path = evaluate_mixes(store, run_id, ALPHAS)
    assert [mix["alpha"] for mix in path] == ALPHAS
    for mix in path:
        assert mix == alone(store, run_id, mix["alpha"])


def test_a_path_encodes_each_image_once_per_mix_and_once_for_the_pretrained_model(finished):
    store, run_id = finished
    hooks = RecordingHooks()
    evaluate_mixes(store, run_id, ALPHAS, hooks=hooks)
    last = hooks.progresses[-1]
    cfg = store.get(run_id).config
    run = prepare(cfg)
    images = len(run.test) + sum(len(data.test) + len(data.train) for data in run.others.values())
    assert last.images_to_encode == last.images_encoded == (1 + len(ALPHAS)) * images
    assert last.probes_total == len(run.others) * (1 + len(ALPHAS))


def test_cancelling_a_path_stops_within_one_dataset_and_keeps_no_mix(finished):
    store, run_id = finished
    datasets = ["mnist", "animals", "fashion_mnist"]  # the task first, then the checked datasets
    stop_in_animals = RecordingHooks(stop_when=lambda hooks: any(p.dataset == "animals" for p in hooks.progresses))
    with pytest.raises(RunCancelled, match="before fashion_mnist"):
        wise_ft_path(store, run_id, [0.3, 0.6], hooks=stop_in_animals)
    assert {p.dataset for p in stop_in_animals.progresses} == set(datasets[:2])
    assert wise_results(store, run_id) == {}
