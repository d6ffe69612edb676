"""Objectives are plugins: one new file adds an objective to the CLI, the Launch page, a real run and the README's
table, with no other file touched; and the committed table is the generated one."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from ldifs_core.objectives.table import README, REFERENCE, with_table
from ldifs_core.paths import PROJECT_ROOT

TOY = '''"""`toy`: cross-entropy times a strength (a test's objective)."""
from ldifs_core.objectives.base import F, Objective
from ldifs_core.settings import option


class Toy(Objective):
    name = "toy"
    summary = "cross-entropy times a strength: a test's objective"
    label = "Toy — a test's objective"
    options = (option("toy_strength", float, 1.0, help="what the cross-entropy is multiplied by", least=0.0,
                      most=10.0, above=True, label="Toy strength"),)
    color, symbol = "#000000", "circle-open"

    def loss(self, batch):
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels) * self.setup.cfg.toy_strength
        return ce, {"ce": ce.detach()}


OBJECTIVE = Toy
'''

# Run in a fresh interpreter whose $LDIFS_OBJECTIVES_PATH names the toy's folder: everything it prints is read
# from the registry as that process found it.
CHECKS = '''
import contextlib, io, json, sys
from streamlit.testing.v1 import AppTest
from app import jobs
from app.jobs import JobRunner
from ldifs_core import cli
from ldifs_core.objectives.table import objectives_table
from ldifs_core.store import RunStore
from tests.app.conftest import MAIN, fake_execute, open_page

found = {}
help_text = io.StringIO()
with contextlib.redirect_stdout(help_text):
    cli.main(["run", "--help"])
found["help"] = help_text.getvalue()
found["table"] = objectives_table()

store = RunStore()
fake = JobRunner(store, execute=fake_execute)
jobs.job_runner = lambda: fake
app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
next(w for w in app.selectbox if w.label == "Objective").set_value("toy")
app.run()
next(n for n in app.number_input if n.label == "Toy strength").set_value(2.5)
next(n for n in app.number_input if n.label == "Steps").set_value(5)
next(b for b in app.button if b.label == "Start run").click()
app.run()
found["page_errors"] = [str(e.value) for e in (*app.exception, *app.error)]
found["queued"] = [record.config.to_dict() for record in store.list()]

tiny = ["--steps", "2", "--batch-size", "16", "--eval-datasets", "animals", "--no-umap", "--train-limit", "200",
        "--eval-limit", "100", "--probe-limit", "10", "--no-weights"]
found["run_exit"] = cli.main(["run", "--objective", "toy", "--toy-strength", "2", "--json", sys.argv[1], *tiny])
print(json.dumps(found))
'''


def test_a_toy_objective_in_one_new_file_reaches_help_launch_page_a_real_run_and_the_table(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toy.py").write_text(TOY)
    metrics_file = tmp_path / "metrics.json"
    env = {**os.environ, "LDIFS_OBJECTIVES_PATH": str(plugins), "LDIFS_STORE": str(tmp_path / "runs")}
    done = subprocess.run([sys.executable, "-c", CHECKS, str(metrics_file)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    assert "toy" in found["help"] and "--toy-strength" in found["help"] and "what the cross-entropy is" in found["help"]
    assert "| `toy` | cross-entropy times a strength: a test's objective | — |" in found["table"]
    assert found["page_errors"] == []
    (queued,) = found["queued"]
    assert (queued["objective"], queued["toy_strength"], queued["steps"]) == ("toy", 2.5, 5)
    assert found["run_exit"] == 0
    metrics = json.loads(metrics_file.read_text())
    assert metrics["config"]["objective"] == "toy" and metrics["config"]["toy_strength"] == 2.0
    assert metrics["config"]["steps"] == 2 and "accuracy_after" in metrics["downstream"]


def test_the_objectives_tables_of_the_readme_and_the_docs_are_the_generated_ones():
    """Stale after an objective plugin changed: run `make docs`."""
    for page, with_options in ((README, False), (REFERENCE, True)):
        text = page.read_text()
        assert with_table(text, with_options) == text, f"{page} is stale: run `make docs`"
