"""Sensitivity (tabular models, shipped or yours): global ranking with intervals, one row's local sensitivities,
what-if, interactions."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import streamlit as st

from dashboard import charts, state
from explain import sensitivity
from explain.sensitivity import data as sensitivity_data

# Method names are the library's function names (explain/README.md); the labels are for the page only.
METHOD_LABELS = {
    "vanilla_gradient": "gradient × σ",
    "gradient_x_input": "gradient × input",
    "integrated_gradients": "integrated gradients",
}
LOCAL_LABELS = {
    "vanilla_gradient": "gradient ∂t/∂x",
    "gradient_x_input": "gradient × input",
    "integrated_gradients": "integrated gradients",
}
SEED = 0
# Fixed row counts: every shape compiles once, so a rerun never waits on XLA.
GLOBAL_ROWS = 300
INTERACTION_ROWS = 100
TOP_K = 5  # the ranking's stability share: how often a feature stays among the top 5


def target_options(e: state.Entry) -> list[str]:
    """The page's targets: the prediction, each class (classification), and the loss when the data has labels."""
    loss = (
        []
        if e.labels is None
        else ["loss (cross-entropy)" if e.model.output_kind == "classification" else "loss (squared error)"]
    )
    if e.model.output_kind == "classification":
        return ["predicted class", *[f"class {c}" for c in e.class_names], *loss]
    return ["output", *loss]


def resolve_target(e: state.Entry, choice: str, y: np.ndarray | None):
    """``(target, labels)`` for the core from the page's target label."""
    if choice.startswith("loss"):
        return "loss", y
    if choice.startswith("class "):
        return list(e.class_names).index(choice[len("class ") :]), None
    return None, None  # predicted logit (classification) or output 0 (regression)


def rows(e: state.Entry, n_rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``n_rows`` inputs of the model's data and their labels (``None`` without labels)."""
    return np.asarray(e.x[:n_rows], np.float32), None if e.labels is None else np.asarray(e.labels[:n_rows])


def baseline_kwargs(e: state.Entry) -> dict:
    """Integrated gradients' baseline: the mean of the reference rows, or zero for a model without data."""
    return {"references": e.references} if e.references is not None else {"baseline": "zero"}


@st.cache_data(show_spinner="Ranking features (bootstrap over rows)…", max_entries=32)
def global_ranking(
    key: str, choice: str, methods: tuple[str, ...], n_rows: int, n_bootstrap: int
) -> sensitivity.GlobalSensitivity:
    e = state.entry(key)
    x, y = rows(e, n_rows)
    target, labels = resolve_target(e, choice, y)
    return sensitivity.rank(
        e.model,
        x,
        key=jax.random.key(SEED),
        target=target,
        labels=labels,
        methods=methods,
        n_bootstrap=n_bootstrap,
        top_k=min(TOP_K, e.model.input_spec.shape[0]),  # the rank-stability share of a 4-feature model: top 4
        **baseline_kwargs(e),
    ).to_numpy()


@st.cache_data(show_spinner="Computing local sensitivities…", max_entries=512)
def local_values(key: str, choice: str, row: np.ndarray, label) -> sensitivity.LocalSensitivity:
    e = state.entry(key)
    target, labels = resolve_target(e, choice, None if label is None else np.asarray([label]))
    return sensitivity.local_sensitivity(
        e.model, row[None], target=target, labels=labels, methods=tuple(LOCAL_LABELS), **baseline_kwargs(e)
    ).to_numpy()


@st.cache_data(show_spinner="Computing Hessians…", max_entries=32)
def interaction_matrix(key: str, choice: str, n_rows: int) -> sensitivity.Interactions:
    e = state.entry(key)
    x, y = rows(e, n_rows)
    target, labels = resolve_target(e, choice, y)
    return sensitivity.interactions(e.model, x, target=target, labels=labels).to_numpy()


class Predicted(NamedTuple):
    """One row's prediction: the text shown, the predicted class (classification) and the value compared."""

    text: str
    cls: int | None
    value: float  # the predicted class's probability, or the (de-standardised) regression output


def predict(e: state.Entry, row: np.ndarray) -> Predicted:
    if e.model.output_kind == "classification":
        p = state.probabilities(e.key, row[None])[0]
        k = int(p.argmax())
        return Predicted(f"{e.class_names[k]} ({p[k]:.1%})", k, float(p[k]))
    z = float(state.outputs(e.key, row[None])[0, 0])
    pre = e.preprocessing
    if "y_mean" in pre and "y_std" in pre:  # the model predicts a standardised target
        v = z * pre["y_std"] + pre["y_mean"]
        return Predicted(f"{v:.4g} (standardised {z:+.3f})", None, float(v))
    return Predicted(f"{z:.4g}", None, z)


def what_if_line(e: state.Entry, now: Predicted, was: Predicted | None, changed: int, where: str) -> str:
    """The prediction line; the original prediction and the change appear only once a feature is edited."""
    line = f"**Prediction: {now.text}** · {where}"
    if not changed or was is None:
        return line
    line += f", {changed} feature(s) edited"
    if now.cls is None:
        return line + f" · Δ = {now.value - was.value:+.4g} (was {was.text})"
    if now.cls != was.cls:
        return line + f" · was: {was.text}"
    return line + f" · Δ P({e.class_names[now.cls]}) = {100 * (now.value - was.value):+.1f} pp"


def global_section(e: state.Entry, choice: str) -> None:
    st.header("Global ranking")
    if e.n < 2:
        st.info("The global ranking needs data rows: pass --data PATH (CSV or Parquet) after this model's --model.")
        return
    n_rows = min(e.n, GLOBAL_ROWS)
    c1, c2 = st.columns([2, 1])
    methods = c1.multiselect(
        "Methods", list(METHOD_LABELS), default=list(METHOD_LABELS), key="sens_methods", format_func=METHOD_LABELS.get
    )
    n_boot = c2.select_slider("Bootstrap resamples", [50, 100, 200, 500], value=200, key="sens_boot")
    if not methods:
        st.info("Choose at least one method.")
        return
    result = global_ranking(e.key, choice, tuple(methods), int(n_rows), int(n_boot))
    shown = st.radio("Ranking shown", methods, horizontal=True, key="sens_show", format_func=METHOD_LABELS.get)
    r = result[shown if shown in result.rankings else methods[0]]
    level = round(100 * result.settings["ci"])
    df, spec = charts.ranking_with_intervals(
        result.feature_names, r.scores, r.lower, r.upper, title=f"{r.description} — {level}% bootstrap intervals"
    )
    st.vega_lite_chart(df, spec, width="stretch")
    st.caption(
        f"{result.settings['n_rows']} rows, {result.settings['n_bootstrap']} resamples, "
        f"target {result.settings['target']} · data: {e.data_note}"
    )
    st.download_button(
        "Download ranking (CSV)",
        result.to_csv(),
        file_name=f"{e.stem}_ranking.csv",
        mime="text/csv",
        key="sens_dl_rank",
    )


def slider_bounds(e: state.Entry) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature slider range: the data's range padded by 10%, else the declared value range, else ±3σ units."""
    f = e.model.input_spec.shape[0]
    if e.n:
        lo, hi = np.asarray(e.x).min(axis=0), np.asarray(e.x).max(axis=0)
        pad = np.maximum(0.1 * (hi - lo), 1e-3)  # a constant column still gets a range to slide over
        return lo - pad, hi + pad
    vr = e.model.input_spec.value_range
    lo, hi = vr if vr is not None else (-3.0, 3.0)
    return np.full(f, lo, np.float32), np.full(f, hi, np.float32)


def local_section(e: state.Entry, choice: str) -> None:
    st.header("One row: local sensitivities and what-if")
    names = sensitivity_data.feature_names(e.model)
    if e.n:
        row_idx = int(st.number_input("Test row", 0, e.n - 1, 0, key="sens_row"))
        original = np.asarray(e.x[row_idx], np.float32)
        where = f"row {row_idx}"
    else:
        # No data: the what-if starts from a typed row, the middle of each slider's range.
        st.caption("This model came without data: type a row with the sliders (or pass --data PATH).")
        row_idx = 0
        lo, hi = slider_bounds(e)
        original = ((lo + hi) / 2).astype(np.float32)
        where = "typed row"
    lo, hi = slider_bounds(e)
    units = "standardised units (σ)" if e.standardised else "model units"
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.markdown(f"**Feature values** ({units})")
        if st.button("Reset to the test row" if e.n else "Reset the row", key="sens_reset"):
            for i in range(len(names)):
                st.session_state.pop(f"sens_f{row_idx}_{i}", None)
        box = st.container(height=560)  # scrolls, so the prediction and chart stay in view while dragging
        edited = np.empty_like(original)
        for i, fname in enumerate(names):
            # The row index is part of the key, so picking another row starts from its own values.
            edited[i] = box.slider(
                fname,
                float(lo[i]),
                float(hi[i]),
                float(np.clip(original[i], lo[i], hi[i])),
                key=f"sens_f{row_idx}_{i}",
                format="%.3f",
            )
    changed = int(np.sum(~np.isclose(edited, original)))
    label = None if e.labels is None else e.labels[row_idx].item()
    loc = local_values(e.key, choice, edited.astype(np.float32), label)
    with right:
        now = predict(e, edited)
        was = predict(e, original) if changed else None
        st.markdown(what_if_line(e, now, was, changed, where))
        method = st.radio(
            "Local method", list(LOCAL_LABELS), horizontal=True, key="sens_local_method", format_func=LOCAL_LABELS.get
        )
        df, spec = charts.signed_bars(
            loc.feature_names,
            loc.values[method][0],
            title=f"{LOCAL_LABELS[method]} of {loc.settings['target']}",
            value_title=method,
        )
        st.vega_lite_chart(df, spec, width="stretch")
    right.download_button(
        "Download local sensitivities (CSV)",
        loc.to_csv(),
        file_name=f"{e.stem}_row{row_idx}.csv",
        mime="text/csv",
        key="sens_dl_local",
    )


def interaction_section(e: state.Entry, choice: str) -> None:
    st.header("Interactions")
    if not e.n:
        st.info("Interactions average Hessians over data rows: pass --data PATH after this model's --model.")
        return
    n_rows = min(e.n, INTERACTION_ROWS)
    inter = interaction_matrix(e.key, choice, n_rows)
    df, spec = charts.heatmap(
        inter.matrix, inter.feature_names, title="mean |∂²t/∂xi∂xj| · σiσj", value_title="strength"
    )
    st.vega_lite_chart(df, spec)
    top = inter.top_pairs(5)
    st.caption(
        f"Hessians of the target on the first {n_rows} rows ({e.data_note}), scaled by feature standard deviations"
    )
    st.markdown("Strongest pairs: " + ", ".join(f"{a} × {c} ({v:.3g})" for a, c, _, _, v in top))
    st.download_button(
        "Download interactions (CSV)",
        inter.to_csv(),
        file_name=f"{e.stem}_interactions.csv",
        mime="text/csv",
        key="sens_dl_int",
    )


def main() -> None:
    st.title("Feature sensitivity")
    options = state.models_for("tabular")
    if not options:
        st.info("No tabular model is loaded: pass one with --model SPEC (a model whose samples have shape (F,)).")
        return
    key = st.selectbox(
        "Model", options, key="sens_model", format_func=state.label, help="a tabular model: shipped, or yours (--model)"
    )
    e = state.entry_or_error(key)
    if e is None:
        return
    choice = st.selectbox("Target", target_options(e), key="sens_target", help="the scalar whose gradient is taken")
    global_section(e, choice)
    local_section(e, choice)
    interaction_section(e, choice)


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.sensitivity.*) and definitions are made once.
    from dashboard.sensitivity import main as _main

    _main()
