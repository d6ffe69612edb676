"""LDIFS Lab's Streamlit front end: thin pages over ldifs_core, pure plot and table functions, one job worker."""
