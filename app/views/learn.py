"""Learn: a one-click demo and the λ slider first, so a newcomer sees concept forgetting and LDIFS at work; what
they are (the formula, the objectives) after them."""
import streamlit as st

from app import demo
from app.lambda_intuition import lambda_intuition
from ldifs_core.config import DEFAULT_LAMBDA, OBJECTIVE_SUMMARY

st.title("Concept forgetting and LDIFS")
st.markdown("""
A pre-trained CLIP recognises a broad range of concepts. **Fine-tuning** its image encoder on one task
makes it better at that task — and often **worse at concepts from other datasets**, even though nobody
asked it to change them. That loss is *concept forgetting* (Mukhoti et al., TMLR 2024). **LDIFS** fine-tunes
while keeping the encoder's features close to the pre-trained ones. See both below; how it works follows.
""")

demo.guided_demo()  # read from the run store: a reload or a new tab shows it again

lambda_intuition()

st.subheader("How it works")
st.markdown("""
The lab measures concept forgetting on the image encoder alone: before and after fine-tuning, on datasets
other than the fine-tuning task, with
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
