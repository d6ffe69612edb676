"""Forgetting: what a finished run gained on its task and lost on the other datasets, per dataset and per concept."""
import streamlit as st

from app import plots, results, tables, widgets

st.title("Concept forgetting")
st.markdown("Accuracy of the **image encoder** before and after fine-tuning. Zero-shot heads always come from the "
            "original text tower, and linear probes are refitted on each encoder, so every drop here is something "
            "the encoder itself lost.")

run_id = widgets.pick_finished_run()
if run_id is not None:
    metrics = results.metrics(run_id)
    downstream = metrics["downstream"]
    gain, zs, lp = st.columns(3)
    gain.metric(f"Accuracy on {downstream['dataset']} (fine-tuned)", f"{downstream['accuracy_after']:.1f}%",
                f"{downstream['accuracy_after'] - downstream['zero_shot_before']:+.1f} vs zero-shot before")
    zs.metric("Mean zero-shot change on the others", f"{metrics['mean_zs_delta']:+.1f} points",
              help="After − before, averaged over the datasets checked for forgetting.")
    lp.metric("Mean linear-probe change on the others", f"{metrics['mean_lp_delta']:+.1f} points",
              help="Linear probes ask whether the features still separate the classes at all.")

    probe = st.segmented_control("Measured with", list(tables.PROBES), default="zs", required=True,
                                 format_func=tables.PROBES.__getitem__)
    st.plotly_chart(plots.accuracy_change(metrics, probe))
    st.caption("The first pair is the fine-tuning task (zero-shot before → tuned classifier after); the others are "
               "the datasets checked for forgetting.")

    st.subheader("Which concepts were forgotten")
    names = [downstream["dataset"]] + [report["dataset"] for report in metrics["forgetting"]]
    dataset_col, limit_col = st.columns([2, 1])
    dataset = dataset_col.selectbox("Dataset", names, index=1 if len(names) > 1 else 0)
    limit = limit_col.slider("Concepts shown", min_value=5, max_value=60, value=20, step=5)
    st.plotly_chart(plots.class_drops(metrics, dataset, limit))
    with st.expander("All concepts as a table"):
        st.dataframe(tables.class_changes(metrics, dataset), hide_index=True)
