"""Sensitivity (tabular models): global ranking with intervals, one row's local sensitivities, what-if, interactions."""

from __future__ import annotations

import jax
import numpy as np
import streamlit as st

from dashboard import charts, state
from explain import sensitivity

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


def target_options(b) -> list[str]:
    if b.model.output_kind == "classification":
        return ["predicted class", *[f"class {c}" for c in b.model.class_names], "loss (cross-entropy)"]
    return ["output", "loss (squared error)"]


def resolve_target(b, choice: str, y: np.ndarray):
    """``(target, labels)`` for the core from the page's target label."""
    if choice.startswith("loss"):
        return "loss", y
    if choice.startswith("class "):
        return b.model.class_names.index(choice[len("class ") :]), None
    return None, None  # predicted logit (classification) or output 0 (regression)


@st.cache_data(show_spinner="Ranking features (bootstrap over rows)…", max_entries=32)
def global_ranking(
    name: str, choice: str, methods: tuple[str, ...], n_rows: int, n_bootstrap: int
) -> sensitivity.GlobalSensitivity:
    b = state.bundle(name)
    x, y = b.dataset.test.x[:n_rows], b.dataset.test.y[:n_rows]
    target, labels = resolve_target(b, choice, y)
    return sensitivity.rank(
        b.model,
        x,
        key=jax.random.key(SEED),
        target=target,
        labels=labels,
        methods=methods,
        n_bootstrap=n_bootstrap,
        references=b.dataset.train.x,
    ).to_numpy()


@st.cache_data(show_spinner="Computing local sensitivities…", max_entries=512)
def local_values(name: str, choice: str, row: np.ndarray, label) -> sensitivity.LocalSensitivity:
    b = state.bundle(name)
    target, labels = resolve_target(b, choice, np.asarray([label]))
    return sensitivity.local_sensitivity(
        b.model, row[None], target=target, labels=labels, methods=tuple(LOCAL_LABELS), references=b.dataset.train.x
    ).to_numpy()


@st.cache_data(show_spinner="Computing Hessians…", max_entries=32)
def interaction_matrix(name: str, choice: str, n_rows: int) -> sensitivity.Interactions:
    b = state.bundle(name)
    x, y = b.dataset.test.x[:n_rows], b.dataset.test.y[:n_rows]
    target, labels = resolve_target(b, choice, y)
    return sensitivity.interactions(b.model, x, target=target, labels=labels).to_numpy()


def describe_prediction(b, name: str, row: np.ndarray) -> str:
    if b.model.output_kind == "classification":
        p = state.probabilities(name, row[None])[0]
        k = int(p.argmax())
        return f"**Prediction: {b.model.class_names[k]} ({p[k]:.1%})**"
    z = float(state.outputs(name, row[None])[0, 0])
    pre = b.dataset.preprocessing
    if "y_mean" in pre and "y_std" in pre:  # the model predicts a standardised target
        return f"**Prediction: {z * pre['y_std'] + pre['y_mean']:.4g}** (standardised {z:+.3f})"
    return f"**Prediction: {z:.4g}**"


def global_section(b, name: str, choice: str) -> None:
    st.header("Global ranking")
    n_rows = min(len(b.dataset.test), GLOBAL_ROWS)
    c1, c2 = st.columns([2, 1])
    methods = c1.multiselect(
        "Methods", list(METHOD_LABELS), default=list(METHOD_LABELS), key="sens_methods", format_func=METHOD_LABELS.get
    )
    n_boot = c2.select_slider("Bootstrap resamples", [50, 100, 200, 500], value=200, key="sens_boot")
    if not methods:
        st.info("Choose at least one method.")
        return
    result = global_ranking(name, choice, tuple(methods), int(n_rows), int(n_boot))
    shown = st.radio("Ranking shown", methods, horizontal=True, key="sens_show", format_func=METHOD_LABELS.get)
    r = result[shown if shown in result.rankings else methods[0]]
    level = round(100 * result.settings["ci"])
    df, spec = charts.ranking_with_intervals(
        result.feature_names, r.scores, r.lower, r.upper, title=f"{r.description} — {level}% bootstrap intervals"
    )
    st.vega_lite_chart(df, spec, width="stretch")
    st.caption(
        f"{result.settings['n_rows']} rows, {result.settings['n_bootstrap']} resamples, target {result.settings['target']}"
    )
    st.download_button(
        "Download ranking (CSV)", result.to_csv(), file_name=f"{name}_ranking.csv", mime="text/csv", key="sens_dl_rank"
    )


def local_section(b, name: str, choice: str) -> None:
    st.header("One row: local sensitivities and what-if")
    test = b.dataset.test
    names = b.model.input_spec.feature_names
    row_idx = int(st.number_input("Test row", 0, len(test) - 1, 0, key="sens_row"))
    original = test.x[row_idx]
    lo, hi = test.x.min(axis=0), test.x.max(axis=0)
    pad = 0.1 * (hi - lo)
    units = "standardised units (σ)" if b.dataset.value_range is None else "model units"
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.markdown(f"**Feature values** ({units})")
        if st.button("Reset to the test row", key="sens_reset"):
            for i in range(len(names)):
                st.session_state.pop(f"sens_f{row_idx}_{i}", None)
        box = st.container(height=560)  # scrolls, so the prediction and chart stay in view while dragging
        edited = np.empty_like(original)
        for i, fname in enumerate(names):
            # The row index is part of the key, so picking another row starts from its own values.
            edited[i] = box.slider(
                fname,
                float(lo[i] - pad[i]),
                float(hi[i] + pad[i]),
                float(original[i]),
                key=f"sens_f{row_idx}_{i}",
                format="%.3f",
            )
    changed = int(np.sum(~np.isclose(edited, original)))
    label = test.y[row_idx].item()
    loc = local_values(name, choice, edited.astype(np.float32), label)
    with right:
        st.markdown(
            f"{describe_prediction(b, name, edited)} · row {row_idx}, {changed} feature(s) edited · "
            f"was: {describe_prediction(b, name, original).replace('**', '')}"
        )
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
        file_name=f"{name}_row{row_idx}.csv",
        mime="text/csv",
        key="sens_dl_local",
    )


def interaction_section(b, name: str, choice: str) -> None:
    st.header("Interactions")
    n_rows = min(len(b.dataset.test), INTERACTION_ROWS)
    inter = interaction_matrix(name, choice, n_rows)
    df, spec = charts.heatmap(
        inter.matrix, inter.feature_names, title="mean |∂²t/∂xi∂xj| · σiσj", value_title="strength"
    )
    st.vega_lite_chart(df, spec)
    top = inter.top_pairs(5)
    st.caption(f"Hessians of the target on the first {n_rows} test rows, scaled by feature standard deviations")
    st.markdown("Strongest pairs: " + ", ".join(f"{a} × {c} ({v:.3g})" for a, c, _, _, v in top))
    st.download_button(
        "Download interactions (CSV)",
        inter.to_csv(),
        file_name=f"{name}_interactions.csv",
        mime="text/csv",
        key="sens_dl_int",
    )


def main() -> None:
    st.title("Feature sensitivity")
    name = st.selectbox("Model", state.tabular_models(), key="sens_model", help="A shipped tabular model")
    b = state.bundle_or_error(name)
    if b is None:
        return
    choice = st.selectbox("Target", target_options(b), key="sens_target", help="the scalar whose gradient is taken")
    global_section(b, name, choice)
    local_section(b, name, choice)
    interaction_section(b, name, choice)


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.sensitivity.*) and definitions are made once.
    from dashboard.sensitivity import main as _main

    _main()
