"""The app never holds on to, moves, tunes or hooks a model: the base model is shared by every thread of the
process (ldifs_core.runner.cached_model), so only the worker's runs, on their private copies, may change one."""
from __future__ import annotations

import re
from pathlib import Path

from app import model_picker
from ldifs_core import runner

APP = Path(__file__).resolve().parents[2] / "app"
MUTATING_CALL = re.compile(r"\.(to|cuda|cpu|train|eval|half|float|requires_grad_|load_state_dict|register_\w*hook|"
                           r"zero_grad|step|backward)\(")


def test_checking_that_a_model_loads_hands_the_shared_model_to_no_one(monkeypatch):
    loaded = []
    monkeypatch.setattr(runner, "cached_model", lambda name, pretrained: loaded.append((name, pretrained)) or object())
    assert model_picker.check_loads(model_picker.ModelChoice("ViT-B-32", "openai")) is None
    assert loaded == [("ViT-B-32", "openai")]


def test_no_app_code_moves_tunes_or_hooks_a_model():
    offenders = [f"{path.relative_to(APP)}:{number}: {line.strip()}"
                 for path in sorted(APP.rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1) if MUTATING_CALL.search(line)]
    assert offenders == []
