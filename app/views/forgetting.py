"""Forgetting: what a finished run gained on its task and lost on the other datasets, per dataset and per concept,
every number with its n and 95 % interval, and the test images of a concept whose verdict flipped."""
import streamlit as st

from app import display, plots, tables, widgets
from ldifs_core import gallery

GALLERY_IMAGES = 32


@st.fragment  # choosing a concept or a direction reruns only the gallery, not the charts above it
def concept_gallery(metrics: dict, dataset: str, probe: str, min_n: int) -> None:
    """The test images of one concept whose verdict flipped (ldifs_core.gallery), with the concept's numbers."""
    st.subheader("See what was forgotten")
    arrays = widgets.run_arrays(metrics["run_id"])
    if arrays is None:
        return
    if not gallery.has_image_records(arrays, dataset):
        st.info(gallery.NO_RECORDS, icon=":material/hide_image:")
        return
    task = dataset == tables.task_dataset(metrics)
    concept_col, direction_col = st.columns([2, 1])
    direction = direction_col.segmented_control(
        "Show the images that", gallery.DIRECTIONS, default=gallery.BECAME_RIGHT if task else gallery.BECAME_WRONG,
        required=True, key=f"gallery-direction-{dataset}",
        help="Became wrong: right before fine-tuning, wrong after. Became right: the reverse.")
    ranked = (tables.class_changes if direction == gallery.BECAME_WRONG else tables.class_gains)(metrics, dataset,
                                                                                                probe, min_n)
    if ranked.empty:
        st.caption(f"No concept of {display.plain(dataset)} has at least {min_n} test images.")
        return
    options = {row.class_name: f"{row.class_name} ({tables.signed(row.change)} points, n = {row.n})"
               for row in ranked.itertuples()}
    concept = concept_col.selectbox("Concept", list(options), format_func=options.__getitem__,
                                    key=f"gallery-concept-{dataset}-{probe}-{direction}",
                                    help="Most surely forgotten first (most surely gained first for 'became right').")
    flips = gallery.flipped_examples(arrays, metrics, dataset, concept, probe, direction, GALLERY_IMAGES)
    row = flips.row
    st.metric(f"Accuracy on “{display.plain(concept)}” ({tables.measured_with(metrics, dataset, probe)})",
              f"{row['after']:.1f}%",
              display.metric_delta(row["change"], f"points from {row['before']:.1f}%"))
    st.caption(f"Change: {display.interval(row['change_ci'])}; n = {row['n']} test images, of which {flips.total} "
               f"{direction}.")
    if not flips.examples:
        st.caption(f"No test image of “{display.plain(concept)}” {direction}.")
        return
    shown = "" if len(flips.examples) == flips.total else f" (the first {len(flips.examples)} of {flips.total})"
    st.image([gallery.crisp(image.thumbnail) for image in flips.examples], output_format="PNG",  # JPEG would blur them
             caption=[f"now: {image.predicted_after}" if direction == gallery.BECAME_WRONG
                      else f"was: {image.predicted_before}" for image in flips.examples])
    st.caption(f"Test images of “{display.plain(concept)}” that {direction}{shown}, each with what the model "
               f"{'now predicts' if direction == gallery.BECAME_WRONG else 'predicted before'}.")


st.title("Concept forgetting")
st.markdown("Accuracy of the **image encoder** before and after fine-tuning. Zero-shot heads always come from the "
            "original text tower, and linear probes are refitted on each encoder, so every drop here is something "
            "the encoder itself lost. Bars and numbers carry 95 % intervals: a change whose interval spans 0 may be "
            "noise.")

metrics = widgets.finished_run_metrics()
if metrics is not None:
    downstream = metrics.get("downstream")
    gain, zs, lp = st.columns(3)
    checked = metrics.get("checked")  # a checkpoint fine-tuned elsewhere (`check`)
    if checked and checked["note"]:
        st.info(display.plain(checked["note"]), icon=":material/info:")
    if downstream is None:  # a check that named no task
        gain.metric("Accuracy on the task", "no task given")
        gain.caption("No task given: this check measures forgetting only (name the task it was fine-tuned on to "
                     "see its accuracy).")
    else:
        gain.metric(f"Accuracy on {display.plain(downstream['dataset'])} ({'checked' if checked else 'fine-tuned'})",
                    f"{downstream['accuracy_after']:.1f}%",
                    display.metric_delta(downstream["change"], "points vs zero-shot before"))
        gain.caption(f"Gain: {display.interval(downstream['change_ci'])}, n = {downstream['n']} test images")
    zs.metric("Mean zero-shot change on the others", f"{tables.signed(metrics['mean_zs_delta'])} points",
              help="After − before, averaged over the datasets checked for forgetting; the interval is a bootstrap "
                   "over their test images.")
    zs.caption(widgets.interval_caption(metrics, "zs"))
    lp.metric("Mean linear-probe change on the others", f"{tables.signed(metrics['mean_lp_delta'])} points",
              help="Linear probes ask whether the features still separate the classes at all.")
    lp.caption(widgets.interval_caption(metrics, "lp"))

    probe = st.segmented_control("Measured with", list(tables.PROBES), default="zs", required=True,
                                 format_func=tables.PROBES.__getitem__,
                                 help="Zero-shot: the original text tower's class prompts. Linear probe: a classifier "
                                      "refitted on each encoder's features. Switches the charts and tables below.")
    st.plotly_chart(plots.accuracy_change(metrics, probe))
    st.caption("The first pair is the fine-tuning task (zero-shot before → tuned classifier after); the others are "
               "the datasets checked for forgetting." if downstream else
               "Each pair is a dataset checked for forgetting.")
    curve = widgets.run_curve(metrics)
    if curve is not None:
        st.subheader("Forgetting over training")
        st.plotly_chart(plots.forgetting_curve(curve))
        st.caption(f"Zero-shot accuracy of the image encoder every {curve.every} steps on a fixed subset of each "
                   "dataset (n in the legend), the task's line thick"
                   + ("; dotted lines mark where each stage of the sequence began." if curve.stage_starts else "."))

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
            "change_ci_low": st.column_config.NumberColumn("95 % CI low", format="%+.1f"),
            "change_ci_high": st.column_config.NumberColumn("95 % CI high", format="%+.1f"),
        })
    concept_gallery(metrics, dataset, probe, int(min_n))
