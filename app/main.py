"""LDIFS Lab: `streamlit run app/main.py`. Navigation, the sidebar job list, and the background worker."""
import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; the pages import the `app` and `ldifs_core` packages by name.
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

import streamlit as st  # noqa: E402

from app import jobs, widgets  # noqa: E402

st.set_page_config(page_title="LDIFS Lab", page_icon=":material/biotech:", layout="wide")
# The page files live in views/, not pages/: a `pages/` folder beside main.py makes Streamlit treat the app as an
# old-style multipage app until st.navigation first runs, so a deep link (/runs) opened first after a restart ran
# the page file alone, without this navigation and sidebar.
# Learn opens first: it needs no torch/open_clip beyond the run store, so the first load stays fast; the
# worker's warm-up (torch, open_clip, numba's UMAP) starts when Launch is opened.
page = st.navigation([
    st.Page("views/learn.py", title="Learn", icon=":material/school:", default=True),
    st.Page("views/launch.py", title="Launch", icon=":material/rocket_launch:"),
    st.Page("views/forgetting.py", title="Forgetting", icon=":material/insights:"),
    st.Page("views/drift.py", title="Feature drift", icon=":material/scatter_plot:"),
    st.Page("views/runs.py", title="Runs & sweeps", icon=":material/table_rows:"),
    st.Page("views/continual.py", title="Continual", icon=":material/stacked_line_chart:"),
])


@st.cache_resource(show_spinner=False)
def _memory_settled() -> bool:
    """Once per process, after the first page has imported the app's modules (see jobs.settle_memory)."""
    jobs.settle_memory()
    return True


# The job list is drawn after the page ran, into a place held at the top of the sidebar: a run the page queued in
# this script run is listed at once, not after the next click. `finally`: a page that stops early still gets it.
jobs_panel = st.sidebar.container()
st.session_state[widgets.PAGE_DRAWING] = True
try:
    page.run()
finally:
    st.session_state[widgets.PAGE_DRAWING] = False
    with jobs_panel:
        widgets.jobs_sidebar()  # also starts this process's worker (jobs.job_runner) on the first visit
_memory_settled()
