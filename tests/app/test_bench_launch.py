"""Launching the comparison bench's objectives and LDIFS ablations from the app: their settings reach the run."""
from __future__ import annotations

import pytest

from tests.app.conftest import open_page


def choose(app, label: str, value):
    widget = next(w for w in app.selectbox if w.label == label)
    widget.set_value(value)
    return app.run()


def number(app, label: str, value):
    next(n for n in app.text_input if n.label == label).set_value(str(value))


def start(app):
    number(app, "Steps", 5)
    next(b for b in app.button if b.label == "Start run").click()
    app.run()
    assert not app.exception and not app.error, [str(e.value) for e in (*app.exception, *app.error)]


@pytest.mark.parametrize("objective, fill, expected", [
    ("lora", {"LoRA rank r": 4, "LoRA α (scale α / r)": 8.0}, {"lora_rank": 4, "lora_alpha": 8.0}),
    ("ls", {"Label smoothing ε": 0.2}, {"ls_factor": 0.2}),
    ("lipsum", {"Random texts per step (M)": 16, "Tokens per random text": 4}, {"lipsum_texts": 16, "lipsum_length": 4}),
])
def test_an_objectives_own_settings_reach_the_queued_run(app, store, objective, fill, expected):
    open_page(app, "launch")
    choose(app, "Objective", objective)
    for label, value in fill.items():
        number(app, label, value)
    start(app)
    (record,) = store.list()
    assert record.config.objective == objective
    assert {key: getattr(record.config, key) for key in expected} == expected


def test_ldifs_taps_variant_and_optimiser_settings_reach_the_queued_run(app, store):
    open_page(app, "launch")
    choose(app, "LDIFS taps: which layers are kept close", "last")
    next(r for r in app.radio if r.label == "LDIFS variant").set_value("released")
    number(app, "Weight decay (AdamW)", 0.0)
    number(app, "Warmup steps", 0)
    number(app, "Gradient-norm clip", 5.0)
    start(app)
    (record,) = store.list()
    cfg = record.config
    assert (cfg.ldifs_taps, cfg.ldifs_variant, cfg.weight_decay, cfg.warmup_steps, cfg.grad_clip) == (
        "last", "released", 0.0, 0, 5.0)
