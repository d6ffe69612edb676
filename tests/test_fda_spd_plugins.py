"""The fda and spd objective plugins: each is its core (ldifs_core/fda.py, spd.py) wired into the one training loop,
and both reach the CLI, sweeps, sequences and the Launch page through the registry alone; model_stock is listed
but never offered for training."""
import contextlib
import io

import pytest
import torch

from ldifs_core import cli
from ldifs_core.config import TRAINED, RunConfig
from ldifs_core.encoding import model_inputs
from ldifs_core.errors import BadConfig
from ldifs_core.fda import fda_loss
from ldifs_core.objectives import OBJECTIVE_TYPES, Batch
from ldifs_core.sequence import SequenceConfig, plan_sequence, sequence_state
from ldifs_core.spd import AdamSPD
from ldifs_core.store import RunStore
from ldifs_core.train import finetune

from tests.test_bench_objectives import CPU, TINY, built


def test_fda_at_theta0_is_the_cores_loss_of_theta0s_features_with_themselves_and_still_pulls(model, digits):
    """At θ = θ₀ the regulariser is not zero (a sigmoid loss always asks for more margin, tests/test_fda.py): it is
    fda_loss of θ₀'s final features against themselves, times λ, and its gradient reaches the tuned tower only."""
    objective = built("fda", model, digits, lam=2.0, fda_k=4, fda_tau=0.2, fda_bias=3.0)
    for p in objective.trainable_parameters():
        p.requires_grad_(True)
    batch = Batch(model_inputs(model, digits.images[:16], CPU), digits.labels[:16], torch.arange(16))
    total, parts = objective.loss(batch)
    with torch.no_grad():
        frozen = model.clip.visual(batch.images)
    expected = 2.0 * fda_loss(frozen, frozen, k=4, tau=0.2, bias=3.0)
    assert parts["fda"].item() == pytest.approx(expected.item(), rel=1e-4) and parts["fda"] > 0
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.setup.tuned.visual.parameters())
    assert all(p.grad is None for p in model.clip.visual.parameters())


def test_fda_refuses_a_k_that_leaves_no_non_neighbours_in_a_batch():
    with pytest.raises(BadConfig, match="fda_k 15 makes every other image"):
        RunConfig(objective="fda", batch_size=16, fda_k=15).validate()
    with pytest.raises(BadConfig, match=r"fda_tau \(τ\) must be in \(0, 10\]"):
        RunConfig(objective="fda", fda_tau=0.0).validate()


def test_spd_with_lambda_zero_trains_exactly_like_ce_and_pulls_back_otherwise(model, digits):
    ce = finetune(RunConfig(objective="ce", **TINY), model, digits, CPU).clip.visual.state_dict()
    free = finetune(RunConfig(objective="spd", lam=0.0, **TINY), model, digits, CPU).clip.visual.state_dict()
    pulled = finetune(RunConfig(objective="spd", lam=1.0, **TINY), model, digits, CPU).clip.visual.state_dict()
    for key, value in ce.items():
        torch.testing.assert_close(free[key], value, rtol=0, atol=0)
    theta0 = model.clip.visual.state_dict()
    distance = lambda state: sum((state[k] - theta0[k]).float().norm() ** 2 for k in theta0)
    assert distance(pulled) < distance(ce)


def test_spd_anchors_the_image_tower_at_theta0_and_the_head_where_it_starts(model, digits):
    objective = built("spd", model, digits)
    params = objective.trainable_parameters()
    optimizer = objective.make_optimizer(params)
    assert isinstance(optimizer, AdamSPD) and optimizer.lam == objective.lam == 2.0
    anchors = dict(zip(map(id, params), (anchor for _, anchor in optimizer.anchored)))
    for name, p in objective.setup.tuned.visual.named_parameters():
        assert torch.equal(anchors[id(p)], dict(model.clip.visual.named_parameters())[name])
    assert torch.equal(anchors[id(objective.setup.head.weight)], objective.setup.head.weight)


def test_other_objectives_keep_adamw_at_the_runs_settings(model, digits):
    objective = built("ldifs", model, digits, lr=1e-3, weight_decay=0.2)
    optimizer = objective.make_optimizer(objective.trainable_parameters())
    assert type(optimizer) is torch.optim.AdamW
    assert (optimizer.defaults["lr"], optimizer.defaults["weight_decay"]) == (1e-3, 0.2)


def test_fda_and_spd_reach_run_help_sweep_grids_and_sequences_and_model_stock_is_not_trained(tmp_path):
    assert {"fda", "spd"} <= set(TRAINED) and "model_stock" not in TRAINED
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text):
        cli.main(["run", "--help"])
    text = help_text.getvalue()
    assert "fda,spd}" in text and "model_stock" not in text
    assert all(flag in text for flag in ("--fda-k", "--fda-tau", "--fda-bias"))

    sweep = cli.build_parser().parse_args(["sweep", "--objectives", "ce,fda,spd", "--lams", "0.3,3", "--seeds", "0",
                                           "--fda-k", "6"])
    planned = cli.sweep_configs(sweep)
    assert [(cfg.objective, cfg.lam) for cfg in planned] == [("ce", None), ("fda", 0.3), ("fda", 3.0), ("spd", 0.3),
                                                              ("spd", 3.0)]
    assert {cfg.fda_k for cfg in planned if cfg.objective == "fda"} == {6}
    with pytest.raises(ValueError, match=r"is not an objective .*spd\)"):
        cli.objective("model_stock")

    store = RunStore(tmp_path / "runs")
    for objective in ("fda", "spd"):
        seq = SequenceConfig(("mnist", "fashion_mnist"), "previous", RunConfig(objective=objective, lam=0.5))
        stages = sequence_state(store, plan_sequence(seq, store)).stages
        assert [store.get(stage.run_id).config.objective for stage in stages] == [objective, objective]


def test_the_launch_page_offers_fda_and_spd_with_their_options_but_not_model_stock(store_dir):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import MAIN, open_page

    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    choice = next(w for w in app.selectbox if w.label == "Objective")
    labels = {name: kind.label for name, kind in OBJECTIVE_TYPES.items()}
    assert {labels["fda"], labels["spd"]} <= set(choice.options) and labels["model_stock"] not in choice.options
    choice.set_value("fda")
    app.run()
    assert {"FDA neighbours per image (K)", "FDA temperature τ", "FDA bias b"} <= {n.label for n in app.text_input}
    assert not app.exception

