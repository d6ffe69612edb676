"""Forgetting: what a finished run gained on its task and lost on the other datasets, per dataset and per concept,
every number with its n and 95 % interval."""
import streamlit as st

from app import plots, tables, widgets

st.title("Concept forgetting")
st.markdown("Accuracy of the **image encoder** before and after fine-tuning. Zero-shot heads always come from the "
            "original text tower, and linear probes are refitted on each encoder, so every drop here is something "
            "the encoder itself lost. Bars and numbers carry 95 % intervals: a change whose interval spans 0 may be "
            "noise.")

metrics = widgets.finished_run_metrics()
if metrics is not None:
    downstream = metrics["downstream"]
    gain, zs, lp = st.columns(3)
    gain.metric(f"Accuracy on {downstream['dataset']} (fine-tuned)", f"{downstream['accuracy_after']:.1f}%",
                f"{tables.signed(downstream['change'])} vs zero-shot before")
    gain.caption(f"Gain {tables.with_interval(downstream['change'], downstream['change_ci'])}, "
                 f"n = {downstream['n']} test images")
    zs.metric("Mean zero-shot change on the others", f"{tables.signed(metrics['mean_zs_delta'])} points",
              help="After − before, averaged over the datasets checked for forgetting; the interval is a bootstrap "
                   "over their test images.")
    zs.caption(tables.with_interval(metrics["mean_zs_delta"], metrics["mean_zs_delta_ci"]))
    lp.metric("Mean linear-probe change on the others", f"{tables.signed(metrics['mean_lp_delta'])} points",
              help="Linear probes ask whether the features still separate the classes at all.")
    lp.caption(tables.with_interval(metrics["mean_lp_delta"], metrics["mean_lp_delta_ci"]))

    probe = st.segmented_control("Measured with", list(tables.PROBES), default="zs", required=True,
                                 format_func=tables.PROBES.__getitem__,
                                 help="Zero-shot: the original text tower's class prompts. Linear probe: a classifier "
                                      "refitted on each encoder's features. Switches the charts and tables below.")
    st.plotly_chart(plots.accuracy_change(metrics, probe))
    st.caption("The first pair is the fine-tuning task (zero-shot before → tuned classifier after); the others are "
               "the datasets checked for forgetting.")

    st.subheader("Which concepts were forgotten")
    st.markdown("Ranked by the **upper end of each change's 95 % interval**: first come the concepts that surely "
                "lost most. A concept resting on a few test images has a wide interval, so it ranks lower than its "
                "bare change suggests; raise the minimum n to leave such concepts out.")
    names = tables.concept_datasets(metrics, probe)
    dataset_col, limit_col, n_col = st.columns([2, 1, 1])
    dataset = dataset_col.selectbox("Dataset", names, index=1 if probe == "zs" and len(names) > 1 else 0)
    limit = limit_col.slider("Concepts shown", min_value=5, max_value=60, value=20, step=5)
    min_n = n_col.number_input("Minimum test images per concept", min_value=1, value=1, step=1,
                               help="Concepts with fewer test images than this are left out of the chart and table.")
    st.plotly_chart(plots.class_drops(metrics, dataset, limit, probe, int(min_n)))
    with st.expander("All concepts as a table"):
        st.dataframe(tables.class_changes(metrics, dataset, probe, int(min_n)), hide_index=True, column_config={
            "n": st.column_config.NumberColumn(help="Test images of this concept."),
            "before": st.column_config.NumberColumn(format="%.1f"),
            "after": st.column_config.NumberColumn(format="%.1f"),
            "change": st.column_config.NumberColumn(format="%+.1f"),
            "change_low": st.column_config.NumberColumn("95 % CI low", format="%+.1f"),
            "change_high": st.column_config.NumberColumn("95 % CI high", format="%+.1f"),
        })
