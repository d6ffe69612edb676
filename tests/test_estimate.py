"""Time claims come from this machine's finished runs (issue 20 item 4), never from a fixed sentence."""
from ldifs_core import estimate
from ldifs_core.config import RunConfig
from tests.app.sample_runs import add_finished_run

RUN = RunConfig(steps=100, batch_size=10, eval_datasets=["animals"])  # measures 2 datasets: the task and animals


def test_no_finished_run_gives_no_estimate_and_says_so(store_dir):
    from ldifs_core.store import RunStore

    assert estimate.estimate(RUN, []) is None
    assert estimate.describe([RUN], RunStore(store_dir)) == estimate.NO_ESTIMATE


def test_training_scales_with_images_trained_on_and_the_rest_with_datasets_measured():
    finished = [(RUN, {"train_s": 50.0, "total_s": 70.0})]  # 0.05 s per image, 10 s per dataset measured
    longer = RunConfig(steps=200, batch_size=20, eval_datasets=["animals", "quickdraw", "fashion_mnist"])
    assert estimate.estimate(longer, finished).seconds == 0.05 * 4000 + 10 * 4


def test_only_runs_of_the_same_model_count():
    other = RunConfig(model="ViT-B-32", pretrained="openai", steps=100, batch_size=10)
    assert estimate.estimate(RUN, [(other, {"train_s": 5.0, "total_s": 6.0})]) is None


def test_the_store_s_finished_runs_give_the_estimate_in_words(store_dir):
    from ldifs_core.store import RunStore

    store = RunStore(store_dir)
    add_finished_run(store, steps=100, batch_size=10, eval_datasets=["animals"])
    text = estimate.describe([RUN, RUN], store)
    assert text.startswith("about ") and "on this machine (measured from its last 1 finished run)" in text
