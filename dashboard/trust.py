"""Which map to trust: every chosen saliency method scored by explanation-quality metrics on a bounded sample.

Page code only: the numbers are one :func:`explain.metrics.report.evaluate` on the first ``n`` images of the
model's data (the predicted class explained, ``key = jax.random.key(seed)``), the same call as
``python -m explain evaluate``, so the page and the report agree for the same sample and seed. The table
colours each column by rank (green best), as the report card does; each metric is explained in one
sentence; the deletion curves show the predicted class's probability as the most relevant pixels are
removed (Petsiuk et al. 2018). Localisation needs object masks: the shipped shapes models' test split has
them, other data does not.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, common, state
from explain.metrics import report as quality
from explain.saliency import registry

DEFAULT_METHODS = ("vanilla_gradient", "smoothgrad", "integrated_gradients", "grad_cam")
SAMPLE = (8, 64, 16)  # the sample-size slider: min, max, default (the first n images of the model's data)
# The time table's columns (to_frame's last two), ranked like the metrics: fewer is better.
EXTRA_COLUMNS = {"seconds": False, "cost": False}
WORST = (0.84, 0.19, 0.15)  # RdYlGn's ends, as the report card: red for a column's worst ...
BEST = (0.10, 0.60, 0.31)  # ... green for its best
MIDDLE = (1.0, 1.0, 0.75)
UNDEFINED = "#d9d9d9"  # grey: NaN (a metric undefined on every sample)


# ----------------------------------------------------------------------------- the sample


def sample_masks(e: state.Entry, n: int) -> np.ndarray | None:
    """``(n, H, W)`` bool object masks of the first ``n`` inputs, or ``None`` when the data has none.

    Only a shipped model on its own test split knows its masks (the shapes dataset draws them); a
    ``--data`` path or a user's bundle gives images without them.
    """
    if not e.shipped or e.x is None:
        return None
    import models
    from models.datasets import load_dataset  # cached per name: the split state.load read

    split = load_dataset(models.SPECS[e.key].dataset).test
    if split.mask is None or len(split.x) != e.n:
        return None
    return np.asarray(split.mask[:n])


# ----------------------------------------------------------------------------- cached computations


@st.cache_data(show_spinner=False, max_entries=16)
def evaluation(key: str, n: int, methods: tuple[str, ...], metrics: tuple[str, ...], seed: int) -> quality.Report:
    """The report of ``methods`` × ``metrics`` on the first ``n`` inputs of ``key``; cached, so reruns are instant."""
    e = state.entry(key)
    x = np.asarray(e.x[:n], np.float32)
    return quality.evaluate(
        e.model, x, methods=methods, metrics=metrics, masks=sample_masks(e, n), key=jax.random.key(seed)
    )


@st.cache_data(show_spinner=False, max_entries=16)
def card_png(key: str, n: int, methods: tuple[str, ...], metrics: tuple[str, ...], seed: int) -> bytes:
    """The report card (:func:`explain.metrics.report.report_card`) of the cached report, as PNG bytes."""
    return common.png_bytes(quality.report_card(evaluation(key, n, methods, metrics, seed)))


# ----------------------------------------------------------------------------- drawing


def rank_colours(ranks: np.ndarray, rows: int) -> np.ndarray:
    """``(M, K)`` CSS colours of ``(M, K)`` ranks (1 best): green best, yellow middle, red worst, grey for NaN.

    ``shade = (rank − 1) / (M − 1)`` places a rank between best (0) and worst (1), as the report card does.
    """
    shade = (ranks - 1) / max(rows - 1, 1)
    out = np.full(ranks.shape, UNDEFINED, dtype=object)
    for idx in zip(*np.nonzero(np.isfinite(shade)), strict=True):
        s = float(shade[idx])
        lo, hi, t = (BEST, MIDDLE, 2 * s) if s <= 0.5 else (MIDDLE, WORST, 2 * s - 1)
        rgb = [round(255 * (a + (b - a) * t)) for a, b in zip(lo, hi, strict=True)]
        out[idx] = "#{:02x}{:02x}{:02x}".format(*rgb)
    return out


def ranked(frame: pd.DataFrame, higher_is_better: list[bool]) -> pd.io.formats.style.Styler:
    """``frame`` (rows methods) with each column coloured by rank (:func:`rank_colours`), 3 significant digits."""
    colours = rank_colours(quality.rank_columns(frame.to_numpy(np.float64), higher_is_better), len(frame))
    css = pd.DataFrame(
        [[f"background-color: {c}; color: black" for c in row] for row in colours],
        index=frame.index,
        columns=frame.columns,
    )
    return frame.style.apply(lambda _: css, axis=None).format("{:.3g}", na_rep="—")


def tables(report: quality.Report) -> tuple[pd.io.formats.style.Styler, pd.io.formats.style.Styler]:
    """The report's frame in two, each column ranked: the ``metric (↑/↓)`` columns, then seconds and cost.

    Two tables, so that the time columns are not scrolled out of sight behind nine metrics.
    """
    frame = report.to_frame()
    metrics = [quality.METRICS[k].column for k in report.metrics]
    better = [quality.METRICS[k].higher_is_better for k in report.metrics]
    return ranked(frame[metrics], better), ranked(frame[list(EXTRA_COLUMNS)], list(EXTRA_COLUMNS.values()))


def deletion_data(report: quality.Report) -> pd.DataFrame:
    """Long form: ``method``, ``fraction`` removed, the ``score`` (mean over the sample) at that fraction."""
    parts = [
        pd.DataFrame(
            {
                "method": method,
                "fraction": np.asarray(curve.fractions, np.float64),
                "score": np.asarray(curve.scores, np.float64).mean(axis=0),
            }
        )
        for method, curve in report.deletion.items()
    ]
    return pd.concat(parts, ignore_index=True)


def explain_metrics(report: quality.Report) -> None:
    """One sentence per computed metric, then what was left out and why."""
    lines = []
    for k in report.metrics:
        info = quality.METRICS[k]
        direction = "higher is better" if info.higher_is_better else "lower is better"
        lines.append(f"- **{info.column}** ({info.family}, {direction}): {info.sentence}")
    st.markdown("\n".join(lines))
    local = [k for k, why in report.skipped.items() if quality.METRICS[k].needs_masks]
    if local:
        st.info(
            f"Localisation ({', '.join(local)}) needs object masks, and this model's data has none: "
            "the shipped shapes models' test split comes with them."
        )
    other = {k: why for k, why in report.skipped.items() if k not in local}
    if other:
        st.caption("Left out: " + "; ".join(f"{k} ({why})" for k, why in other.items()))


def show(e: state.Entry, report: quality.Report, args: tuple) -> None:
    """The ranked table, the metrics' sentences, the deletion curves, then seconds, cost and the downloads."""
    seed = f", seed {report.seed}" if report.seed >= 0 else ""
    st.subheader(f"{report.n} images, {len(report.methods)} methods{seed}")
    scores, timing = tables(report)
    st.dataframe(scores, width="stretch")
    st.caption("Each column coloured by rank among the methods: green best, red worst, grey undefined.")
    explain_metrics(report)
    data = deletion_data(report)
    target = next(iter(report.deletion.values())).target_name or "score"
    spec = charts.lines(
        data, x="fraction", y="score", color="method", title=f"{report.model}: deletion curves ({report.n} images)",
        x_title="fraction of pixels removed (most relevant first)", y_title=f"mean {target}",
    )  # fmt: skip
    st.vega_lite_chart(data, spec, width="stretch")
    st.caption("A faithful map makes the curve fall fast: its area is the table's deletion_auc.")
    st.subheader("Time and cost")
    left, right = st.columns([2, 3])
    left.dataframe(timing, width="stretch")
    right.caption(
        "seconds: each method's maps of the whole sample, compilation excluded; cost: those seconds as a multiple "
        "of one forward pass over the same images (the metrics' own time is not counted)."
    )
    d1, d2 = right.columns(2)
    d1.download_button(
        "Report card (PNG)", card_png(*args), f"{e.stem}_trust.png", "image/png", key="trust_dl_png", on_click="ignore"
    )
    d2.download_button(
        "Table (CSV)", report.to_frame().to_csv(), f"{e.stem}_trust.csv", "text/csv", key="trust_dl_csv",
        on_click="ignore",
    )  # fmt: skip


# ----------------------------------------------------------------------------- the page


def controls(e: state.Entry) -> tuple[int, int]:
    """The sidebar: sample size and seed."""
    lo, hi, default = SAMPLE
    with st.sidebar:
        st.subheader("Sample")
        st.caption(f"The first images of {e.data_note}")
        if e.n <= lo:
            n = e.n  # too few for the slider's range: all of them
            st.caption(f"{n} images (all of them)")
        else:
            hi = min(hi, e.n)
            n = int(st.slider("Images", lo, hi, min(default, hi), key="trust_n", help="the first n images"))
        seed = int(st.number_input("Seed (noise, random perturbations)", 0, 2**31 - 1, 0, key="trust_seed"))
    return n, seed


def main() -> None:
    st.title("Which map to trust")
    st.markdown(
        "Saliency methods draw different maps of the same prediction. These metrics ask which maps are "
        "**faithful** to the model (removing what they mark changes the output), **stable**, **on the object** "
        "and **concise**, on a sample of the model's images, explaining the predicted class."
    )
    options = state.models_for("image")
    if not options:
        st.info("No image model is loaded: pass one with --model SPEC (an (H, W, 1) or (H, W, 3) classifier).")
        return
    key = st.selectbox(
        "Model", options, key="trust_model", format_func=state.label, help="an image model: shipped, or yours (--model)"
    )
    e = state.entry_or_error(key)
    if e is None:
        return
    if not e.n:
        st.info(f"{e.name} came without data: pass --data PATH after its --model to evaluate on real images.")
        return
    n, seed = controls(e)
    runnable = list(registry.usable(e.model))
    # A row each: in half-width columns the chips of four methods were clipped.
    methods = st.multiselect(
        "Methods", runnable, default=[m for m in DEFAULT_METHODS if m in runnable], key="trust_methods",
        help="the table's rows",
    )  # fmt: skip
    metrics = st.multiselect(
        "Metrics", list(quality.METRICS), default=list(quality.DEFAULT_METRICS), key="trust_metrics",
        help="the table's columns; stability metrics rerun each method 10 times",
    )  # fmt: skip
    if not methods or not metrics:
        st.info("Choose at least one method and one metric.")
        return
    args = (key, n, tuple(methods), tuple(m for m in quality.METRICS if m in metrics), seed)
    # Once asked for, a configuration stays on (cached); a new one is asked for again, as it may take a minute.
    done = st.session_state.setdefault("trust_done", set())
    if args not in done:
        ask = st.empty()
        with ask.container():
            st.caption(
                f"Scores {len(methods)} methods on {n} images with {len(metrics)} metrics: the first run compiles "
                "every method and metric (up to a minute), then it is cached."
            )
            clicked = st.button("Evaluate", key="trust_run", type="primary")
        if not clicked:
            return
        ask.empty()
    with st.spinner(f"Evaluating {len(methods)} methods on {n} images…"):
        try:
            report = evaluation(*args)
        except (ValueError, TypeError) as err:  # a method or metric this model cannot run: say so, keep the page
            st.error(f"{e.name}: {common.redact(str(err))}")
            return
    done.add(args)
    show(e, report, args)


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.trust.*) and definitions are made once.
    from dashboard.trust import main as _main

    _main()
