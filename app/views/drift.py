"""Feature drift: where the image features of other datasets moved during fine-tuning."""
import streamlit as st

from app import plots, results, tables, widgets

SHOW_LABELS = {plots.SHOW_BEFORE: "Before", plots.SHOW_AFTER: "After", plots.SHOW_BOTH: "Both"}

st.title("Feature drift")
st.markdown("The same test images embedded by the pre-trained and by the fine-tuned encoder, projected together "
            "into 2-D, plus the numbers that do not depend on any projection.")

metrics = widgets.finished_run_metrics()
if metrics is not None:
    run_arrays = widgets.run_arrays(metrics["run_id"])
    embedded = results.umap_datasets(run_arrays) if run_arrays is not None else []
    if run_arrays is not None and not embedded:
        st.info("This run stored no UMAP points (it ran with 0 UMAP points); the numbers below still apply.",
                icon=":material/info:")
    elif embedded:
        dataset_col, show_col = st.columns([2, 1])
        dataset = dataset_col.selectbox("Dataset", embedded)
        show = show_col.segmented_control("Show", list(SHOW_LABELS), default=plots.SHOW_BOTH, required=True,
                                          format_func=SHOW_LABELS.__getitem__)
        labels = run_arrays[f"umap_labels/{dataset}"]
        names = results.class_names(metrics, dataset, labels)
        present = sorted({names[int(label)] for label in labels})
        worst = [c for c in tables.class_changes(metrics, dataset)["class_name"] if c in present][:2]
        trails = st.multiselect("Draw pre → post trails for", present, default=worst,
                                help="Starts on the two concepts whose accuracy dropped most.")
        st.plotly_chart(plots.feature_map(run_arrays[f"umap_pre/{dataset}"], run_arrays[f"umap_post/{dataset}"], labels,
                                          names, run_arrays[f"umap_ids/{dataset}"], show, trails))
        st.caption("2-D distances are only a picture: UMAP bends space, so judge drift by the numbers below.")

    st.subheader("Drift in numbers")
    st.plotly_chart(plots.layer_distances(metrics))
    st.dataframe(tables.drift_numbers(metrics), hide_index=True, column_config={
        "LDIFS distance": st.column_config.NumberColumn(format="%.4f", help="Squared distance of unit-normalised "
                                                        "features, averaged over the tapped layers: what LDIFS penalises."),
        "centroid shift": st.column_config.NumberColumn(format="%.4f", help="Mean 1 − cos between each class's "
                                                        "centroid before and after: 0 = concepts stayed put."),
        "k-NN overlap": st.column_config.NumberColumn(format="%.2f", help="Share of each image's 10 nearest "
                                                      "neighbours that are the same before and after: 1 = same."),
    })
