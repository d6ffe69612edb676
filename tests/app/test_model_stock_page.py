"""The Runs page's Model Stock panel (beside WiSE-FT): it pairs a finished run with the runs of the same settings
and another seed, and its button queues the merge in the worker as a run of its own."""
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from app import jobs
from app.jobs import JobRunner
from tests.app.conftest import MAIN, fake_execute, open_page, wait_for_status
from tests.app.sample_runs import add_finished_run


def with_weights(store, run_id: str) -> str:
    save_file({"head.weight": torch.zeros(2, 2)}, str(store.run_folder(run_id) / "weights.safetensors"))
    return run_id


def test_model_stock_pairs_runs_of_the_same_settings_and_queues_the_merge_as_a_run(store, monkeypatch):
    first, second = (with_weights(store, add_finished_run(store, objective="ce", seed=seed)) for seed in (0, 1))
    add_finished_run(store, objective="ce", seed=2, lr=1e-3)  # other settings: never offered as a partner
    runner = JobRunner(store, execute=fake_execute)
    monkeypatch.setattr(jobs, "job_runner", lambda: runner)
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "runs")
    app.session_state["runs-tab"] = "WiSE-FT"
    app.run()
    app.selectbox(key="stock-a").set_value(first).run()
    assert app.selectbox(key="stock-b").options == [app.selectbox(key="stock-b").format_func(second)]
    next(b for b in app.button if b.label == "Merge with Model Stock").click().run()
    assert not app.exception and not app.error
    (merged,) = [record for record in store.list() if record.config.objective == "model_stock"]
    assert merged.config.model_stock_runs == f"{first},{second}"
    assert wait_for_status(store, merged.run_id, ("done",)) == "done"
