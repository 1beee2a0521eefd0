"""Chain rule and gradient flow: per-layer gradient norms, the depth experiment, the single-neuron example."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, common, state
from explain import gradflow
from explain.primer import chain_rule, depth

MAX_DEPTH = 30  # the depth MLPs share one scan of this length: every depth reuses one compile per activation
DEFAULT_INITS = ["normal", "glorot", "he"]


@st.cache_data(show_spinner=False, max_entries=256)
def layer_flow(key: str, index: int, target: str | None) -> pd.DataFrame:
    """Per-layer gradient norms for input ``index`` of the model's data: ``target`` is ``"loss"`` (against the
    true label), ``"pred"`` or ``None`` (the model's default: output 0 of a regression model)."""
    e = state.entry(key)
    x = np.asarray(e.x[index : index + 1], np.float32)
    labels = np.asarray(e.labels[index : index + 1]) if target == "loss" else None
    flow = gradflow.gradient_flow(e.model, x, target=target, labels=labels)
    return pd.DataFrame(flow.rows())


@st.cache_data(show_spinner=False, max_entries=4096)
def depth_point(activation: str, init: str, d: int, seed: int) -> tuple[depth.DepthRow, depth.DepthRow]:
    """The depth-``d`` MLP at initialisation and after training (cached per depth, so the slider only adds depths)."""
    return depth.depth_rows(activation, init, d, max_depth=MAX_DEPTH, seed=seed)


# Gradient norms span many decades (1e-10 next to 1e2): fixed decimals print most of them as 0.0000.
FLOW_COLUMNS = {
    "act_grad_mean": st.column_config.NumberColumn("‖∂L/∂h‖ (mean)", format="%.3e"),
    "param_grad_mean": st.column_config.NumberColumn("‖∂L/∂W‖ (mean)", format="%.3e"),
    "dead_fraction": st.column_config.NumberColumn("dead units", format="%.3f"),
}


def flow_section() -> None:
    st.header("Gradient flow through a model")
    options = state.models_for("any")
    c1, c2, c3 = st.columns(3)
    key = c1.selectbox("Model", options, key="gf_model", format_func=state.label, help="shipped, or yours (--model)")
    e = None if key is None else state.entry_or_error(key)
    if e is None:
        return
    if not e.n:
        st.info(f"{e.name} came without data: pass --data PATH after its --model to backpropagate real inputs.")
        return
    index = int(c2.number_input("Input", 0, e.n - 1, 0, key="gf_index", help=e.data_note))
    regression = e.model.output_kind == "regression"
    choices = ("loss", "pred") if e.labels is not None else ("pred",)  # the loss needs a label
    target = c3.radio(
        "Differentiate",
        choices,
        format_func={"loss": "loss vs true label", "pred": "output 0" if regression else "predicted logit"}.get,
        horizontal=True,
        key="gf_target",
    )
    with st.spinner("Backpropagating through every layer…"):
        try:
            rows = layer_flow(key, index, target if target == "loss" or not regression else None)
        except ValueError as err:  # e.g. a model without layers to tap: say so, keep the page
            st.error(f"{e.name}: {common.redact(str(err))}")
            return
    long = pd.concat(
        [
            pd.DataFrame({"layer": rows["layer"], "gradient": "‖∂L/∂h‖ (activations)", "norm": rows["act_grad_mean"]}),
            pd.DataFrame({"layer": rows["layer"], "gradient": "‖∂L/∂W‖ (parameters)", "norm": rows["param_grad_mean"]}),
        ],
        ignore_index=True,
    )
    long = long[np.isfinite(long["norm"]) & (long["norm"] > 0)]  # a log scale cannot show zeros
    spec = charts.lines(
        long, x="layer", y="norm", color="gradient", title=f"{e.name}: gradient norms per layer (input → output)",
        log_y=True, y_title="norm (log scale)",
    )  # fmt: skip
    st.vega_lite_chart(long, spec, width="stretch")
    st.dataframe(rows[["layer", *FLOW_COLUMNS]], hide_index=True, width="stretch", column_config=FLOW_COLUMNS)


def depth_section() -> None:
    st.header("Depth experiment: vanishing and exploding gradients")
    st.markdown(
        "An MLP of depth *d* (width 64) multiplies one local Jacobian per layer, "
        "diag(act′(zₗ)) Wₗ. The chart shows **‖∂L/∂h₁‖ / ‖∂L/∂h_d‖**: below 1 the gradient vanishes on its way "
        "back to the first layer, above 1 it explodes. The sigmoid's derivative is at most 0.25, so its product "
        "falls at least as fast as 0.25^(d−1) when the weights do not amplify."
    )
    # The multiselects get a row of their own: in a quarter-width column their chips were clipped.
    c1, c2 = st.columns(2)
    acts = c1.multiselect("Activations", list(depth.ACTIVATIONS), default=list(depth.ACTIVATIONS), key="gf_acts")
    inits = c2.multiselect("Initialisations", list(depth.INITS), default=DEFAULT_INITS, key="gf_inits")
    c3, c4 = st.columns([3, 1])
    max_d = c3.slider("Depth", 2, MAX_DEPTH, 10, key="gf_depth")
    stage = c4.radio("Stage", ("init", "trained"), key="gf_stage", horizontal=True, help="trained: after 5 Adam steps")
    if not acts or not inits:
        st.info("Choose at least one activation and one initialisation.")
        return
    records = []
    total = len(acts) * len(inits) * max_d
    bar = st.progress(0.0, text="Running the depth MLPs…")
    done = 0
    for a in acts:
        for i in inits:
            for d in range(1, max_d + 1):
                at_init, trained = depth_point(a, i, d, 0)
                r = at_init if stage == "init" else trained
                records.append({"curve": f"{a} / {i}", "depth": d, "ratio": r.ratio})
                done += 1
            bar.progress(done / total, text=f"Running the depth MLPs… {done}/{total}")
    bar.empty()
    records += [{"curve": "0.25^(d−1) bound", "depth": d, "ratio": 0.25 ** (d - 1)} for d in range(1, max_d + 1)]
    df = pd.DataFrame(records)
    df = df[np.isfinite(df["ratio"]) & (df["ratio"] > 0)]
    spec = charts.lines(
        df, x="depth", y="ratio", color="curve", title=f"first-layer / last-layer gradient norm ({stage})", log_y=True,
        y_title="‖∂L/∂h₁‖ / ‖∂L/∂h_d‖ (log scale)",
    )  # fmt: skip
    st.vega_lite_chart(df, spec, width="stretch")
    deepest = df[df["depth"] == max_d].set_index("curve")["ratio"]
    st.caption(
        f"at depth {max_d}: " + ", ".join(f"{k} {v:.2g}" for k, v in deepest.items() if not k.startswith("0.25"))
    )


def neuron_section() -> None:
    st.header("The single neuron, factor by factor")
    st.markdown("z = w·x + b, ŷ = σ(z), L = (ŷ − y)²: **∂L/∂w = 2(ŷ − y) · σ′(z) · x**")
    c = st.columns(4)
    w = c[0].slider("w", -4.0, 4.0, 0.5, 0.1, key="gf_w")
    b = c[1].slider("b", -4.0, 4.0, 0.0, 0.1, key="gf_b")
    x = c[2].slider("x", -4.0, 4.0, 1.5, 0.1, key="gf_x")
    y = c[3].slider("y", 0.0, 1.0, 1.0, 0.05, key="gf_y")
    ex = chain_rule.single_neuron(w, b, x, y)
    # The hand formulas of the primer, evaluated in plain Python floats beside JAX's factors.
    z = w * x + b
    s = 1.0 / (1.0 + math.exp(-z))
    hand = [2 * (s - y), s * (1 - s), x]
    table = pd.DataFrame(
        {
            "factor": [n for n, _ in ex.factors] + ["product (chain rule)", "jax.grad of L(w)"],
            "JAX": [v for _, v in ex.factors] + [ex.chained, ex.autodiff],
            "hand formula": [*hand, math.prod(hand), ex.closed_form],
        }
    )
    table["difference"] = (table["JAX"] - table["hand formula"]).abs()
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"difference": st.column_config.NumberColumn(format="%.1e")},
    )
    st.caption(
        f"z = {z:.3f}, ŷ = {s:.4f}. σ′(z) ≤ 0.25 always (here {s * (1 - s):.4f}): one reason deep sigmoid chains vanish."
    )


def main() -> None:
    st.title("Chain rule and gradient flow")
    flow_section()
    depth_section()
    neuron_section()


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.gradflow.*) and definitions are made once.
    from dashboard.gradflow import main as _main

    _main()
