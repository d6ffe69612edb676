"""Launch's "Check a fine-tuned checkpoint": the CLI's checks of the files run before anything is queued."""
from __future__ import annotations

import torch
from streamlit.testing.v1 import AppTest

from app.check_form import START_CHECK
from ldifs_core.models import load_model
from app import jobs
from tests.app.conftest import open_page, wait_for_wise

CHECK = "Check a fine-tuned checkpoint"  # the Launch page's choice beside "Fine-tune"


def check_form(app: AppTest, tuned: str) -> AppTest:
    open_page(app, "launch")
    app.segmented_control(key="launch-action").set_value(CHECK).run()
    next(t for t in app.text_input if t.label == "Fine-tuned checkpoint file").input(tuned)
    next(b for b in app.button if b.label == START_CHECK).click().run(timeout=60)
    return app


def errors(app: AppTest) -> str:
    return "\n".join(str(e.value) for e in app.error)


def test_a_file_that_is_not_a_checkpoint_is_refused_and_nothing_is_queued(app, store, tmp_path):
    (tmp_path / "notes.pt").write_text("my notes")
    check_form(app, str(tmp_path / "notes.pt"))
    assert "is not a checkpoint: it is a text file" in errors(app)
    assert store.list() == []


def test_a_good_checkpoint_is_queued_as_a_checked_run(app, store, tmp_path):
    torch.save(load_model().clip.visual.state_dict(), tmp_path / "tower.pt")
    check_form(app, str(tmp_path / "tower.pt"))
    assert not app.exception and errors(app) == ""
    [record] = store.list()
    assert record.config.checked and record.config.tuned == str(tmp_path / "tower.pt")
    assert record.config.describe().startswith("checked tower.pt")


def test_a_check_without_a_task_is_queued_so_and_every_page_reads_it(store, tmp_path):
    """No task given: the run has no task row, and the pages show its forgetting without one."""
    from ldifs_core.cli import main
    from tests.app.conftest import MAIN, PAGES

    torch.save(load_model().clip.state_dict(), tmp_path / "whole.pt")
    assert main(["check", "--tuned", str(tmp_path / "whole.pt"), "--datasets", "animals,mnist", "--eval-limit", "30",
                 "--probe-limit", "2", "--probe-cap", "20", "--store", str(store.root)]) == 0
    [record] = store.list()
    assert record.config.dataset is None and record.config.describe() == "checked whole.pt (no task)"
    app = AppTest.from_file(MAIN, default_timeout=60)
    for page in PAGES:
        open_page(app, page)
        assert not app.exception, (page, app.exception)
    open_page(app, "forgetting")
    assert any("No task" in str(element.value) for element in app.caption)
    open_page(app, "runs")
    for tab in ("Download", "WiSE-FT"):
        app.session_state["runs-tab"] = tab
        assert not app.run().exception, tab
    next(b for b in app.button if b.label.startswith("Evaluate the WiSE-FT path")).click().run()
    wait_for_wise(jobs.job_runner(), record.run_id, ("done",), timeout_s=120)
    assert not app.run().exception and any("no task given" in str(m.value) for m in app.metric)
