"""Figures and summaries drawn once per input and reused on every rerun that shows the same runs.

Building a Plotly figure validates every property and costs several times more than sending it, and a page
switch redraws the same figures from the same table. The cached figures are shared read-only by all sessions:
st.plotly_chart copies a figure (`to_dict`) before sending it, and no page changes one after drawing it.
"""
import hashlib
import pickle

import pandas as pd
import streamlit as st

from app import plots, tables

FIGURES = 32  # entries per cached function: a few filter choices of a few stores
# A table's key from its pickle: Streamlit's own DataFrame hashing cost ~6 ms per call, a tenth of a Runs page
# rerun, paid by every session on every rerun.
FRAME_KEY = {pd.DataFrame: lambda frame: hashlib.sha1(pickle.dumps(frame)).hexdigest()}

tradeoff = st.cache_resource(show_spinner=False, max_entries=FIGURES, hash_funcs=FRAME_KEY)(plots.tradeoff)
objectives_pareto = st.cache_resource(show_spinner=False, max_entries=FIGURES,
                                      hash_funcs=FRAME_KEY)(plots.objectives_pareto)
lambda_sweep = st.cache_resource(show_spinner=False, max_entries=FIGURES, hash_funcs=FRAME_KEY)(plots.lambda_sweep)
lambda_sweep_table = st.cache_data(show_spinner=False, max_entries=FIGURES,
                                   hash_funcs=FRAME_KEY)(tables.lambda_sweep)
