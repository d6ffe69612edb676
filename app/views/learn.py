"""Learn: what concept forgetting and LDIFS are, and a one-click demo that shows both side by side."""
import streamlit as st

from app import jobs, model_picker, results, widgets
from app.lambda_intuition import lambda_intuition
from ldifs_core.config import DEFAULT_LAMBDA, OBJECTIVE_SUMMARY, RunConfig
from ldifs_core.errors import LabError

DEMO_RUNS = "demo_runs"  # session_state: the (ce, ldifs) run ids of this session's guided demo
DEMO_TASK = RunConfig().dataset

st.title("Concept forgetting and LDIFS")
st.markdown("""
A pre-trained CLIP recognises a broad range of concepts. **Fine-tuning** its image encoder on one task
makes it better at that task — and often **worse at concepts from other datasets**, even though nobody
asked it to change them. That loss is *concept forgetting* (Mukhoti et al., TMLR 2024).

The lab measures it on the image encoder alone: before and after fine-tuning, on datasets other than the
fine-tuning task, with
- **zero-shot accuracy**, whose class head always comes from the *original* text tower, and
- **linear-probe accuracy**, a classifier refitted on each encoder's features — it asks whether the
  concepts are still separable at all.

**LDIFS** (ℓ2 distance in feature space) fine-tunes with an extra term that keeps the encoder's
intermediate features close to those of the frozen pre-trained encoder θ₀, over several layers:
""")
st.latex(r"\mathrm{LDIFS}(x) = \frac{1}{L}\sum_{l=1}^{L}\frac{1}{P}\sum_{p=1}^{P}"
         r"\left\lVert \hat\phi_{l,p}(\theta, x) - \hat\phi_{l,p}(\theta_0, x) \right\rVert_2^2")
st.markdown(r"$\hat\phi_{l,p}$ is the feature at layer $l$ and position $p$ (a token or pixel), unit-normalised "
            r"along its channels. Training minimises")
st.latex(r"\mathcal{L}(\theta) = \mathrm{CE}(\theta) + \lambda \cdot \mathrm{LDIFS}")
st.markdown(f"""
λ trades the two: λ = 0 is plain fine-tuning (CE); the lab's default is λ = {DEFAULT_LAMBDA['ldifs']:g}.
For comparison the lab also offers the paper's other baselines and three newer ways to fine-tune without
forgetting, all on the same model, data and budget:
""")
st.markdown("\n".join(f"- **{name}** — {summary}" for name, summary in OBJECTIVE_SUMMARY.items()))
st.markdown("""

**Where to look:** *Launch* starts runs · *Forgetting* shows accuracy before and after, per dataset and per
concept · *Feature drift* shows how the features moved · *Runs & sweeps* compares runs, sweeps λ and mixes
weights with WiSE-FT.
""")
st.page_link("views/launch.py", label="Launch a run of your own", icon=":material/rocket_launch:")

lambda_intuition()

st.subheader("Guided demo: CE vs LDIFS")
st.markdown(f"Queues two runs that differ only in the objective — plain CE and LDIFS (λ = "
            f"{DEFAULT_LAMBDA['ldifs']:g}) — fine-tuning the embedded model on **{DEMO_TASK}** and checking "
            f"forgetting on the other concept-bank datasets. About one to three minutes on a CPU.")
if st.button("Run the demo", type="primary", icon=":material/science:"):
    try:
        model_picker.check_loads(model_picker.ModelChoice())
    except LabError as err:
        widgets.show_error(err)
    else:
        runner = jobs.job_runner()
        demo = [runner.submit(RunConfig(objective=objective, label=f"demo {objective}")) for objective in ("ce", "ldifs")]
        for run_id in demo:
            widgets.remember_run(run_id)
        st.session_state[DEMO_RUNS] = demo

demo_runs = st.session_state.get(DEMO_RUNS, [])
if demo_runs:
    demo_records = results.records(demo_runs)
    if len(demo_records) == len(demo_runs) and all(record.status == "done" for record in demo_records):
        st.markdown("Same task, same steps, same seed: LDIFS should give up little accuracy on the task and "
                    "forget less elsewhere.")
        widgets.compare_runs(demo_runs)
    else:
        widgets.live_runs(demo_runs)
