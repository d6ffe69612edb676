"""Feature drift: where the image features of other datasets moved during fine-tuning."""
import pandas as pd
import streamlit as st

from app import display, plots, results, tables, widgets
from ldifs_core import drift_records
from ldifs_core.image_records import png_base64

SHOW_LABELS = {plots.SHOW_BOTH: "Overlay with trails", plots.SHOW_SIDE: "Before | After", plots.SHOW_BEFORE: "Before",
               plots.SHOW_AFTER: "After"}
ALL_COLOURED_UP_TO = 10  # a dataset with at most this many concepts in the picture starts with all in colour
DEFAULT_COLOURED = 8
PROBE_NAMES = {"zs": "zero-shot", "lp": "linear probe"}
NEIGHBOURS = 5
REDUCTIONS = {drift_records.UMAP: "UMAP (as fitted by the run)", drift_records.PCA: "PCA (instant, linear)"}
SPACE_CAPTIONS = {
    drift_records.UMAP: "2-D distances are only a picture: UMAP bends space, so judge drift by the numbers below.",
    drift_records.PCA: "2-D distances are only a picture: PCA keeps the two directions of largest spread and "
                       "flattens the rest, so judge drift by the numbers below."}
TAPS_EXPLAINED = (
    "The tapped layers run from input to output: **stem** is where the image enters the tower (a ViT's patch "
    "embeddings after its first layer norm, a ResNet's convolutional stem after pooling) and **tap 1–4** sit at "
    "evenly spaced depths after it (a ViT's residual stream after every quarter of its blocks, e.g. blocks 3, 6, 9 "
    "and 12 of ViT-B/32; a ResNet's four stages), the last one just before the pooled embedding.")
MOVED_HELP = ("Relative displacement of a test image: how far its feature moved (pre-trained → fine-tuned, unit-"
              "normalised features), divided by the mean distance to its 10 nearest neighbours before fine-tuning. "
              "Above 1, the image left its old neighbourhood. Averaged over the concept's test images (all of them, "
              "not only the points drawn), with a 95 % interval; ranked by the interval's low end, so a concept "
              "resting on one or two images does not top the list.")


def image_key(dataset: str) -> str:
    return f"drift_image_{dataset}"


def chart_key(dataset: str) -> str:
    return f"drift_map_{dataset}"


def follow_click(dataset: str) -> None:
    """A click on a point picks its image in the 'Test image' box (before the rerun, so the box shows it)."""
    position = plots.clicked_position(st.session_state.get(chart_key(dataset)))
    if position is not None:
        st.session_state[image_key(dataset)] = position


def neighbour_rows(run_arrays: dict, dataset: str, found: list, names: list[str]) -> pd.DataFrame:
    """One row per neighbour: its thumbnail, concept, zero-shot prediction before → after, and similarity."""
    rows = []
    for neighbour in found:
        facts = drift_records.image_facts(run_arrays, dataset, neighbour.position)
        predicted = facts.predictions.get("zs")
        rows.append({"image": None if facts.thumbnail is None else f"data:image/png;base64,{png_base64(facts.thumbnail)}",
                     "test image": f"#{neighbour.position}", "concept": display.plain(names[neighbour.label]),
                     "zero-shot": "" if predicted is None else " → ".join(display.plain(names[p]) for p in predicted),
                     "cosine": neighbour.similarity})
    return pd.DataFrame(rows)


def neighbours_panel(run_arrays: dict, dataset: str, position: int, names: list[str]) -> None:
    """The picked image's nearest drawn test images in θ₀'s feature space and in the tuned model's: which concepts
    it sat among, and which it sits among now."""
    found = drift_records.neighbours(run_arrays, dataset, position, NEIGHBOURS)
    if found is None:
        st.caption("Neighbours need a run made by this version: it keeps the features of the drawn points.")
        return
    st.markdown(f"**{NEIGHBOURS} nearest test images** among the points drawn, by cosine similarity of features")
    for column, (when, title) in zip(st.columns(2), (("before", "before fine-tuning (θ₀)"),
                                                     ("after", "after fine-tuning"))):
        concepts = pd.Series([display.plain(names[n.label]) for n in found[when]]).value_counts()
        column.caption(f"{title}: among " + ", ".join(f"{name} ×{count}" for name, count in concepts.items()))
        column.dataframe(neighbour_rows(run_arrays, dataset, found[when], names), hide_index=True,
                         key=f"neighbours_{when}_{dataset}", column_config={
                             "image": st.column_config.ImageColumn("image", width="small"),
                             "cosine": st.column_config.NumberColumn(format="%.3f")})


def image_panel(run_arrays: dict, dataset: str, position: int, names: list[str]) -> None:
    """The picked test image: its thumbnail, true concept and the predictions before and after fine-tuning."""
    facts = drift_records.image_facts(run_arrays, dataset, position)
    picture, words = st.columns([1, 3])
    if facts.thumbnail is not None:
        picture.image(facts.thumbnail, width=144, caption=f"test image #{position}")
    else:
        picture.caption("No thumbnail stored for this image: runs made before per-image records keep none.")
    if facts.label is None:
        words.caption("This run stored no per-image predictions: run it again to see them here.")
        return
    lines = [f"**{display.plain(names[facts.label])}** (true concept), test image #{position} of "
             f"{display.plain(dataset)}"]
    for probe, predicted in facts.predictions.items():
        before, after = (f"{display.plain(names[label])} {'✓' if label == facts.label else '✗'}"
                         for label in predicted)
        lines.append(f"{PROBE_NAMES.get(probe, probe)}: {before} → {after}")
    if facts.displacement is not None:
        lines.append(f"relative displacement: {facts.displacement:.2f}")
    words.markdown("  \n".join(lines))


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
        dataset_col, show_col, reduction_col = st.columns([1, 1, 1])
        dataset = dataset_col.selectbox("Dataset", embedded)
        show = show_col.segmented_control("Show", list(SHOW_LABELS), default=plots.SHOW_BOTH, required=True,
                                          format_func=SHOW_LABELS.__getitem__)
        reduction = reduction_col.radio("Reduction", list(REDUCTIONS), format_func=REDUCTIONS.__getitem__,
                                        horizontal=True, help="UMAP keeps neighbourhoods but bends distances; PCA "
                                        "is a linear projection of the kept features, drawn at once.")
        projected = drift_records.projection(run_arrays, dataset, reduction)
        if projected is None:
            st.info("PCA needs a run made by this version (it keeps the features of the drawn points); showing "
                    "the UMAP.", icon=":material/info:")
            reduction = drift_records.UMAP
            projected = drift_records.projection(run_arrays, dataset, reduction)
        labels, ids = run_arrays[f"umap_labels/{dataset}"], run_arrays[f"umap_ids/{dataset}"]
        names = results.class_names(metrics, dataset, drift_records.recorded_labels(run_arrays, dataset))
        moved = drift_records.most_moved(run_arrays, dataset, names)
        ranked = tables.colour_order(metrics, dataset, moved, sorted({names[int(label)] for label in labels}))
        k_col, trails_col = st.columns([1, 2])
        most = min(len(ranked), plots.MAX_COLOURED)
        k = k_col.number_input(
            "Concepts in colour", min_value=1, max_value=most, step=1,
            value=most if len(ranked) <= ALL_COLOURED_UP_TO else min(DEFAULT_COLOURED, most),
            help="The concepts that moved most (table below) get a colour, the rest stay grey."
            if moved is not None else "The concepts whose zero-shot accuracy dropped most surely get a colour, the "
                                      "rest stay grey (this run stored no displacements to rank by).")
        trails = trails_col.multiselect(
            "Draw pre → post trails for", ranked, default=ranked[:2], disabled=show != plots.SHOW_BOTH,
            help="Trails show in the overlay view, in their concept's colour; a concept picked here gets a colour. "
                 "Starts on the two concepts first in the colour order.")
        coloured = list(dict.fromkeys(ranked[:int(k)] + trails))
        st.plotly_chart(plots.feature_map(*projected, labels, names, ids, show, plots.concept_colors(coloured, names),
                                          trails, reduction),
                        key=chart_key(dataset), on_select=lambda: follow_click(dataset), selection_mode="points")
        st.caption(f"{SPACE_CAPTIONS[reduction]} Click a point to see its image and its nearest neighbours.")
        concept_of = {int(i): names[int(label)] for i, label in zip(ids, labels)}
        position = st.selectbox("Test image", sorted(concept_of), index=None, key=image_key(dataset),
                                format_func=lambda p: f"#{p} · {concept_of[p]}",
                                placeholder="click a point in the picture, or pick an image here")
        if position is not None:
            image_panel(run_arrays, dataset, position, names)
            neighbours_panel(run_arrays, dataset, position, names)
        if moved is not None:
            st.markdown("**Concepts that moved most** in feature space", help=MOVED_HELP)
            st.dataframe(tables.most_moved(metrics, dataset, moved), hide_index=True, height=260, column_config={
                "class_name": "concept",
                "displacement": st.column_config.NumberColumn("relative displacement", format="%.2f", help=MOVED_HELP),
                "displacement_low": st.column_config.NumberColumn("95 % low", format="%.2f"),
                "displacement_high": st.column_config.NumberColumn("95 % high", format="%.2f"),
                "zero-shot change": st.column_config.NumberColumn(format="%+.1f points"),
            })
        else:
            st.caption("This run was made before per-image drift records: run it again for the table of concepts "
                       "that moved most and for test-image thumbnails.")

    st.subheader("Drift in numbers")
    st.plotly_chart(plots.layer_distances(metrics))
    st.caption(TAPS_EXPLAINED)
    st.dataframe(tables.drift_numbers(metrics), hide_index=True, column_config={
        "LDIFS distance": st.column_config.NumberColumn(format="%.4f", help="Squared distance of unit-normalised "
                                                        "features, averaged over the tapped layers: what LDIFS penalises."),
        "centroid shift": st.column_config.NumberColumn(format="%.4f", help="Mean 1 − cos between each class's "
                                                        "centroid before and after: 0 = concepts stayed put."),
        "k-NN overlap": st.column_config.NumberColumn(format="%.2f", help="Share of each image's 10 nearest "
                                                      "neighbours that are the same before and after: 1 = same."),
    })
