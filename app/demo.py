"""The Learn page's guided demo: plain CE and LDIFS with the same settings, side by side.

The demo's runs are found in the run store by their settings (ldifs_core.reuse), not kept in the session, so a
reload, a new tab or a restarted app shows them again, and pressing the button again trains only what is missing.
"""
from __future__ import annotations

import streamlit as st

from app import jobs, model_picker, results, widgets
from ldifs_core import availability, estimate, reuse
from ldifs_core.config import DEFAULT_LAMBDA, RunConfig
from ldifs_core.datasets import BANK_NAMES
from ldifs_core.errors import LabError

DEMO_OBJECTIVES = ("ce", "ldifs")
DEMO_TASK = RunConfig().dataset
OFFER = "demo-offer"  # session_state: the demo's runs were already in the store when the button was pressed
RUN_AGAIN = "Run the demo again anyway"


def demo_configs() -> list[RunConfig]:
    return [RunConfig(objective=objective, label=f"demo {objective}") for objective in DEMO_OBJECTIVES]


def demo_runs() -> list[str] | None:
    """Per demo objective, the newest identical run that is queued, running or finished by this code version;
    None while one of them has none."""
    store = results.run_store()
    found = [reuse.same_runs(store, cfg) for cfg in demo_configs()]
    return [runs[0].run_id for runs in found] if all(found) else None


def queue(configs: list[RunConfig]) -> None:
    runner = jobs.job_runner()
    for cfg in configs:
        widgets.remember_run(runner.submit(cfg))


def guided_demo() -> None:
    st.subheader("Guided demo: CE vs LDIFS")
    st.markdown(f"Queues two runs that differ only in the objective — plain CE and LDIFS (λ = "
                f"{DEFAULT_LAMBDA['ldifs']:g}) — fine-tuning the embedded model on **{DEMO_TASK}** and checking "
                f"forgetting on the other concept-bank datasets. Both runs: "
                f"{estimate.describe(demo_configs(), results.run_store())}. Once they finished, their comparison "
                f"stays here.")
    if st.button("Run the demo", type="primary", icon=":material/science:"):
        st.session_state.pop(OFFER, None)
        try:
            for name in dict.fromkeys([DEMO_TASK, *BANK_NAMES]):  # the task and the datasets it checks
                availability.check_dataset(name)
            model_picker.check_loads(model_picker.ModelChoice())
        except LabError as err:
            widgets.show_error(err)
        else:
            store = results.run_store()
            missing = [cfg for cfg in demo_configs() if not reuse.same_runs(store, cfg)]
            queue(missing)
            st.session_state[OFFER] = not missing
    if st.session_state.get(OFFER):
        st.info("The demo's two runs are already in the run store (finished or under way) with this version of the "
                "lab, so nothing was queued: the same settings give the same numbers.", icon=":material/recycling:")
        if st.button(RUN_AGAIN, icon=":material/replay:"):
            st.session_state.pop(OFFER)
            queue(demo_configs())
    runs = demo_runs()
    if runs is None:
        return
    if all(record.status == "done" for record in results.records(runs)):
        st.markdown("Same task, same steps, same seed: LDIFS should give up little accuracy on the task and "
                    "forget less elsewhere.")
        widgets.compare_runs(runs)
    else:
        widgets.live_runs(runs)
