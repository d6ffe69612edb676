"""docs/own-loop.md's script, run as written (the embedded model, fabricated images, a few steps): its regulariser
is the lab's own `ldifs` objective's on the same batch, and what it saves is a checkpoint the lab reads."""
import copy
import re
import runpy

import numpy as np
import pytest
import torch
from PIL import Image

from ldifs_core.checkpoints import WHOLE_MODEL, read_tuned_weights
from ldifs_core.config import RunConfig
from ldifs_core.models import EMBEDDED_CHECKPOINT, EMBEDDED_MODEL, load_model, register_embedded_config
from ldifs_core.objectives.base import Batch, TrainingSetup
from ldifs_core.objectives.ldifs import LDIFS
from ldifs_core.paths import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "own-loop.md"
LAM = 7.0


def the_script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 1, "own-loop.md shows one script"
    return blocks[0]


def fabricated_image_folder(root, classes=("circle", "square"), per_class=4):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def run_script(tmp_path, monkeypatch):
    """Runs the script in this process (the embedded model's config registered) with the test's size knobs; returns
    its globals and printed lines."""
    register_embedded_config()
    script = tmp_path / "finetune.py"
    script.write_text(the_script())
    monkeypatch.chdir(tmp_path)
    for key, value in {"MODEL": EMBEDDED_MODEL, "PRETRAINED": str(EMBEDDED_CHECKPOINT), "BATCH": "4",
                       "LAM": str(LAM), "DATA": str(fabricated_image_folder(tmp_path / "images"))}.items():
        monkeypatch.setenv(key, value)

    def run(steps: int, capsys) -> tuple[dict, list[str]]:
        monkeypatch.setenv("STEPS", str(steps))
        monkeypatch.setenv("OUT", str(tmp_path / f"finetuned-{steps}.pt"))
        capsys.readouterr()
        names = runpy.run_path(str(script), run_name="__main__")
        return names, capsys.readouterr().out.splitlines()

    return run


def test_the_script_is_at_most_40_lines():
    assert len(the_script().splitlines()) <= 40


@pytest.mark.slow
def test_the_scripts_regulariser_is_the_labs_ldifs_objective_on_the_same_batch(run_script, tmp_path, capsys):
    last, printed = run_script(3, capsys)
    before_last, _ = run_script(2, capsys)  # the same seed: the weights the last step started from
    assert [line.split(":")[0] for line in printed] == ["step 0", "step 1", "step 2"]
    reported = float(printed[-1].rsplit(" ", 1)[1])

    base = load_model().private_copy()
    tuned = copy.deepcopy(base.clip)
    tuned.load_state_dict(before_last["model"].state_dict())
    cfg = RunConfig(dataset="mnist", objective="ldifs", lam=LAM, ldifs_taps=4, ldifs_variant="paper")
    head = torch.nn.Linear(tuned.visual.output_dim, 2)
    objective = LDIFS(TrainingSetup(cfg, base, tuned, head, None, torch.device("cpu")))
    images, labels = last["images"], last["labels"]
    _, parts = objective.loss(Batch(images, labels, torch.arange(len(labels))))

    assert parts["ldifs"].item() > 0, "three steps moved the tower"
    # Float noise only: the script's tower runs in train mode, the lab's check here in eval (other attention kernels).
    assert reported == pytest.approx(parts["ldifs"].item(), rel=1e-4)
    assert (LAM * last["reg"]).item() == pytest.approx(parts["ldifs"].item(), rel=1e-4)
    assert read_tuned_weights(tmp_path / "finetuned-3.pt", base)[1] == WHOLE_MODEL
