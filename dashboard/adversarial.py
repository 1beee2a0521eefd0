"""Adversarial lab: an attack on one test image, the saliency before and after, the model's robustness curve.

Attacks (all L∞, labels = the model's prediction): FGSM (Goodfellow et al. 2015), PGD (Madry et al. 2018),
APGD with the cross-entropy or the DLR loss and its targeted variant APGD-T (Croce & Hein 2020), and the
gradient-free Square Attack (Andriushchenko et al. 2020). The curve is FGSM + PGD, or an AutoAttack-style
suite (:mod:`explain.adversarial.suite`) whose robust accuracy is the worst case over its attacks.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, state
from dashboard.common import as_pil, enlarge, unit_range
from explain import adversarial, viz
from explain.adversarial import evaluation, explanations
from explain.adversarial import suite as suite_lib
from explain.model import Model
from explain.saliency import registry

# The curve's modes: FGSM + PGD on every example, or a suite run in sequence on the points still robust.
FGSM_PGD = "fgsm_pgd"
CURVE_MODES = (FGSM_PGD, *suite_lib.SUITES)
CURVE_MODE_LABELS = {FGSM_PGD: "FGSM + PGD", "rapid": "rapid suite", "standard": "standard suite"}
CURVE_EXAMPLES = 64  # FGSM + PGD curve sample: the first test images
CURVE_EPS_255 = (0, 1, 2, 4, 8, 16)  # ε grid in 1/255 units
CURVE_PGD_STEPS = 10
# Suites cost far more per example (APGD-T runs once per target class, Square up to 5,000 forward passes per
# example still robust), so they get fewer examples and fewer budgets. ε = 0 is left out: every attack would
# run its full length there without any chance of success; the curve draws the clean accuracy at ε = 0.
SUITE_EXAMPLES = {"rapid": 32, "standard": 16}
SUITE_EPS_255 = {"rapid": (2, 4, 8, 16), "standard": (2, 8)}
# Measured on the page on 2 CPU cores, first request per model, compilation cache warm: rapid 36 s (shapes_cnn)
# to 46 s (shapes_cnn_robust); standard 50 s to 88 s (shapes_cnn_robust: Square runs on the 15 of 16 images
# that APGD leaves at 2/255).
SUITE_COST = {"rapid": "about a minute", "standard": "one to two minutes"}

ATTACKS = ("FGSM", "PGD", "APGD-CE", "APGD-DLR", "APGD-T", "Square")
ITERATIVE = ("PGD", "APGD-CE", "APGD-DLR", "APGD-T")  # the attacks with a number of gradient steps
RANDOM = (*ITERATIVE, "Square")  # the attacks that draw from the seed
# The lab opens on an attack that succeeds on the standard model: PGD at 8/255 on test image 1 of
# shapes_cnn (a square; FGSM already flips it at 4/255, PGD-10 at 8/255 for seeds 0–4).
DEFAULT_INDEX = 1
DEFAULT_ATTACK = "PGD"
DEFAULT_EPS_255 = 8.0


class Attacked(NamedTuple):
    """One attacked image: ``x_adv (H, W, C)``, clean and adversarial probabilities ``(K,)``, norms of δ."""

    x_adv: np.ndarray
    p_clean: np.ndarray
    p_adv: np.ndarray
    success: bool
    linf: float
    l2: float


def run_attack(
    model: Model, x: np.ndarray, kind: str, *, eps: float, steps: int, queries: int, goal: int | None, key: jax.Array
) -> adversarial.AttackResult:
    """The attack ``kind`` (one of :data:`ATTACKS`) at L∞ budget ``eps`` on ``x (N, H, W, C)``.

    Untargeted attacks move away from the model's prediction, targeted ones (``goal``) towards that class.
    APGD-T picks its own goals (each of the best other classes in turn) and so takes no ``goal``.
    """
    if kind == "FGSM":
        return adversarial.fgsm(model, x, eps=eps, goal=goal)
    if kind == "PGD":
        return adversarial.pgd(model, x, eps=eps, steps=steps, key=key, goal=goal)
    if kind == "Square":
        return adversarial.square(model, x, eps=eps, queries=queries, key=key, goal=goal)
    losses = {"APGD-CE": "ce", "APGD-DLR": "dlr", "APGD-T": "dlr_targeted"}
    if kind not in losses:
        raise ValueError(f"expected an attack in {list(ATTACKS)}, got {kind!r}")
    if kind == "APGD-T" and goal is not None:
        raise ValueError("APGD-T chooses its own goal classes: expected goal=None")
    return adversarial.apgd(model, x, eps=eps, steps=steps, loss=losses[kind], key=key, goal=goal)


@st.cache_data(show_spinner=False, max_entries=256)
def attack(
    key: str, index: int, kind: str, eps: float, steps: int, queries: int, goal: int | None, seed: int
) -> Attacked:
    """The attack ``kind`` (L∞) on image ``index`` of the model's data, away from the predicted class or towards
    the class ``goal``."""
    e = state.entry(key)
    x = np.asarray(e.x[index : index + 1], np.float32)
    r = run_attack(e.model, x, kind, eps=eps, steps=steps, queries=queries, goal=goal, key=jax.random.key(seed))
    r = r.to_numpy()
    x_adv = np.asarray(r.x_adv[0])
    delta = x_adv - x[0]
    return Attacked(
        x_adv=x_adv,
        p_clean=state.softmax(r.outputs_clean)[0],
        p_adv=state.softmax(r.outputs_adv)[0],
        success=bool(r.success[0]),
        linf=float(np.abs(delta).max()),
        l2=float(np.sqrt((delta.astype(np.float64) ** 2).sum())),
    )


@st.cache_data(show_spinner="Explaining the clean and the adversarial image…", max_entries=256)
def saliency_pair(key: str, x: np.ndarray, x_adv: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Gradient saliency of the predicted class on clean and adversarial input, with top-10% overlap and Spearman ρ."""
    both = np.stack([x, x_adv])
    g = registry.call("vanilla_gradient", state.entry(key).model, both, target="pred").to_numpy().values
    flat = np.abs(g).sum(-1).reshape(1, 2, -1)
    k = max(1, flat.shape[-1] // 10)
    overlap = float(explanations.topk_overlap(flat[:, 0], flat[:, 1], k)[0])
    rho = float(explanations.spearman(flat[:, 0], flat[:, 1])[0])
    return g[0], g[1], overlap, rho


class Curve(NamedTuple):
    """A model's robustness curve over its ``n`` first test images.

    ``rows``: one row per attack and ε (:class:`explain.adversarial.evaluation.Row` fields, ``eps_255``, and
    ``line``: the curve it is drawn on; for a suite the attacks so far, its accuracy being cumulative).
    ``breakdown`` (suites only): per ε and attack, the robust accuracy after it (cumulative), the examples it
    ran on and its seconds. ``broken_by`` (suites only): per ε, how many examples each attack broke first,
    ``clean`` counting those misclassified without attack and ``robust`` those nothing broke.
    """

    rows: pd.DataFrame
    checks: pd.DataFrame
    clean: float
    chance: float
    n: int
    breakdown: pd.DataFrame | None
    broken_by: pd.DataFrame | None


def curve_plan(mode: str) -> tuple[int, tuple[float, ...]]:
    """``(examples, ε grid in 1/255)`` of a curve mode, read at call time (tests shrink them)."""
    if mode == FGSM_PGD:
        return CURVE_EXAMPLES, tuple(CURVE_EPS_255)
    if mode not in SUITE_EXAMPLES:
        raise ValueError(f"expected a curve mode in {list(CURVE_MODES)}, got {mode!r}")
    return SUITE_EXAMPLES[mode], tuple(SUITE_EPS_255[mode])


def suite_tables(results: Sequence[suite_lib.SuiteResult], n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-attack breakdown and the first-breaking-attack counts of a suite's results, one per ε."""
    breakdown, counts = [], []
    for r in results:
        for name, after, attacked, seconds in zip(r.attacks, r.robust_after, r.attacked, r.seconds, strict=True):
            breakdown.append(
                {
                    "eps_255": r.eps * 255,
                    "attack": name,
                    "robust accuracy after": after,
                    "examples attacked": attacked,
                    "seconds": seconds,
                }
            )
        c = collections.Counter(r.broken_by)
        counts.append(
            {
                "eps_255": r.eps * 255,
                "clean": c[suite_lib.CLEAN],
                **{name: c[name] for name in r.attacks},
                "robust": c[""],
                "examples": n,
            }
        )
    return pd.DataFrame(breakdown), pd.DataFrame(counts)


def check_table(report: evaluation.RobustnessReport) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "check": [c.name for c in report.checks],
            "result": [{True: "passed", False: "FAILED", None: "skipped"}[c.passed] for c in report.checks],
            "detail": [c.detail for c in report.checks],
        }
    )


@st.cache_data(show_spinner=False, max_entries=16)
def robustness(key: str, mode: str = FGSM_PGD, seed: int = 0) -> Curve:
    """Accuracy against ε on the first labelled images, FGSM + PGD or a suite, and the sanity checks; cached per
    model."""
    e = state.entry(key)
    n, grid = curve_plan(mode)
    n = min(n, e.n)
    x, y = np.asarray(e.x[:n], np.float32), np.asarray(e.labels[:n])
    if mode == FGSM_PGD:
        how = {
            "attacks": {
                "FGSM": adversarial.AttackConfig("fgsm", steps=1, random_start=False),
                f"PGD-{CURVE_PGD_STEPS}": adversarial.AttackConfig("pgd", steps=CURVE_PGD_STEPS),
            }
        }
    else:
        # On a small sample one example moves accuracy by 1/n: the margin-loss check's default slack (0.05)
        # is below that for n < 20, so it is allowed one example's worth (gaps are multiples of 1/n).
        how = {"suite": mode, "margin_tol": max(0.05, 1.5 / n)}
    report = evaluation.evaluate_robustness(
        e.model, x, labels=y, eps=[e / 255 for e in grid], key=jax.random.key(seed), large_eps_examples=n, **how
    )
    rows = pd.DataFrame([dataclasses.asdict(r) for r in report.rows])
    rows["eps_255"] = rows["eps"] * 255
    breakdown = broken_by = None
    if report.suite is None:
        rows["line"] = rows["attack"]
    else:
        names = list(report.suite_results[0].attacks)
        rows["line"] = rows["attack"].map({a: " + ".join(names[: i + 1]) for i, a in enumerate(names)})
        breakdown, broken_by = suite_tables(report.suite_results, n)
    return Curve(rows, check_table(report), report.clean_accuracy, report.chance, n, breakdown, broken_by)


def describe(classes, p: np.ndarray) -> str:
    k = int(p.argmax())
    return f"{classes[k]} ({p[k]:.1%})"


def perturbation_image(delta: np.ndarray):
    """δ amplified to the full grey range: ``0.5 + δ / (2 max|δ|)``; returns the image and the gain."""
    m = float(np.abs(delta).max())
    gain = 0.5 / m if m > 0 else 1.0
    return as_pil(0.5 + delta * gain), 2 * gain


ATTACK_HELP = (
    "all L∞, labels = the model's prediction. FGSM: one signed-gradient step. PGD: projected steps from a random "
    "start. APGD (Croce & Hein 2020): PGD with momentum and an adaptive step, on the cross-entropy or the DLR "
    "margin; APGD-T: targeted DLR towards each of the best other classes in turn. Square: random search over "
    "square patches, model outputs only (no gradients)."
)


def attack_section(key: str, e: state.Entry) -> None:
    classes = list(e.class_names)
    with st.sidebar:
        st.subheader("Attack")
        index = int(
            st.number_input("Test image", 0, e.n - 1, min(DEFAULT_INDEX, e.n - 1), key="adv_index", help=e.data_note)
        )
        kind = st.radio(
            "Attack", ATTACKS, index=ATTACKS.index(DEFAULT_ATTACK), horizontal=True, key="adv_attack", help=ATTACK_HELP
        )
        eps255 = st.slider("ε (× 1/255, L∞)", 0.0, 32.0, DEFAULT_EPS_255, 0.5, key="adv_eps")
        steps = st.slider(
            "Steps", 1, 200, 10, key="adv_steps", disabled=kind not in ITERATIVE,
            help="gradient steps of PGD and APGD (APGD-T: per target class)",
        )  # fmt: skip
        queries = st.slider(
            "Square queries", 100, 5000, 1000, 100, key="adv_queries", disabled=kind != "Square",
            help="forward passes at most; the search stops once the attack succeeds",
        )  # fmt: skip
        targeted = st.checkbox(
            "Targeted", key="adv_targeted", disabled=kind == "APGD-T",
            help="APGD-T is targeted by construction: it picks its goal classes itself",
        )  # fmt: skip
        targeted = targeted and kind != "APGD-T"
        target_name = st.selectbox(
            "Goal class", classes, index=1 % len(classes), key="adv_target", disabled=not targeted
        )
        seed = int(
            st.number_input(
                "Seed (random start / search)", 0, 2**31 - 1, 0, key="adv_seed", disabled=kind not in RANDOM
            )
        )
    goal = classes.index(target_name) if targeted else None
    with st.spinner(f"Running {kind}…"):
        # Settings an attack does not read are passed as 0, so changing them reuses the cached result.
        a = attack(
            key, index, kind, eps255 / 255, int(steps) if kind in ITERATIVE else 0,
            int(queries) if kind == "Square" else 0, goal, seed if kind in RANDOM else 0,
        )  # fmt: skip
    x = np.asarray(e.x[index], np.float32)
    vr = e.model.input_spec.value_range
    if targeted and int(np.argmax(a.p_clean)) == goal:
        st.info(f"The model already predicts '{target_name}' for this image: a targeted attack towards it is trivial.")
    verdict = "succeeded" if a.success else "failed"
    if targeted:
        aim = f"towards '{target_name}'"
    elif kind == "APGD-T":
        aim = "towards each of the best other classes in turn"
    else:
        aim = "away from the prediction"
    truth = "" if e.labels is None else f" · true label: {classes[int(e.labels[index])]}"
    st.markdown(
        f"**{kind} {verdict}** ({aim}, ε = {eps255:g}/255): "
        f"**{describe(classes, a.p_clean)} → {describe(classes, a.p_adv)}**{truth}"
    )
    delta = a.x_adv - x
    pert, gain = perturbation_image(delta)
    c1, c2, c3 = st.columns(3)
    c1.image(enlarge(as_pil(unit_range(x, vr))), caption=f"original: {describe(classes, a.p_clean)}")
    c2.image(
        enlarge(pert),
        caption=f"perturbation ×{gain:.0f}: ‖δ‖∞ = {a.linf * 255:.2f}/255, ‖δ‖₂ = {a.l2:.3f}",
    )
    c3.image(enlarge(as_pil(unit_range(a.x_adv, vr))), caption=f"adversarial: {describe(classes, a.p_adv)}")

    st.subheader("Saliency before and after")
    g_clean, g_adv, overlap, rho = saliency_pair(key, x, a.x_adv)
    s1, s2, s3 = st.columns(3)
    s1.image(
        enlarge(viz.overlay(unit_range(x, vr), g_clean, alpha=0.7)),
        caption=f"gradient, clean ({describe(classes, a.p_clean)})",
    )
    s2.image(
        enlarge(viz.overlay(unit_range(a.x_adv, vr), g_adv, alpha=0.7)),
        caption=f"gradient, adversarial ({describe(classes, a.p_adv)})",
    )
    s3.metric("top-10% overlap", f"{overlap:.0%}")
    s3.metric("Spearman ρ of the maps", f"{rho:.2f}")


def curve_offer(mode: str) -> str:
    """What the curve in ``mode`` runs, on how many images, and what it costs."""
    n, grid = curve_plan(mode)
    if mode == FGSM_PGD:
        what, cost = f"FGSM and PGD-{CURVE_PGD_STEPS}", "takes a while"
    else:
        cfgs = suite_lib.suite_attacks(mode)
        what = f"The {mode} suite ({', '.join(cfgs)}: each attack runs on the images every earlier one left robust)"
        cost = f"takes {SUITE_COST[mode]} per model on 2 CPU cores"
    return (
        f"{what} on the first {n} test images at ε ∈ {list(grid)}/255, with the sanity checks. "
        f"The first request per model {cost}; the result is cached for every session."
    )


def curve_data(curves: list[pd.DataFrame], clean: dict[str, float], chance: float, suite: bool) -> pd.DataFrame:
    """The chart's long-form data: one line per model and attack (or attacks so far), and chance.

    A suite's grid leaves ε = 0 out (nothing can move there); its lines start at the clean accuracy at ε = 0.
    """
    rows = pd.concat(curves, ignore_index=True)
    if suite:
        start = rows[["model", "line"]].drop_duplicates().assign(eps_255=0.0)
        start["accuracy"] = start["model"].map(clean)
        rows = pd.concat([start, rows], ignore_index=True)
    rows["curve"] = rows["line"] if len(clean) == 1 else rows["model"] + " · " + rows["line"]
    eps = np.unique(rows["eps_255"])
    chance_rows = pd.DataFrame({"curve": "chance", "eps_255": eps, "accuracy": chance})
    return pd.concat([rows[["curve", "eps_255", "accuracy"]], chance_rows], ignore_index=True)


def robustness_section(key: str, e: state.Entry) -> None:
    st.subheader("Robustness curve")
    if e.labels is None:
        st.info(
            "The robustness curve measures accuracy, so it needs labelled images: pass --data with class "
            "subfolders (or an .npz with x and y) after this model's --model."
        )
        return
    mode = st.radio(
        "Attacks", CURVE_MODES, format_func=CURVE_MODE_LABELS.get, horizontal=True, key="adv_curve_mode",
        help="FGSM + PGD: each attack on every image. The suites (AutoAttack-style, Croce & Hein 2020) run their "
        "attacks in sequence on the images still robust and report the worst case per image.",
    )  # fmt: skip
    twins = state.twins(key)
    compare = (
        st.multiselect(
            "Compare with",
            twins,
            format_func=state.label,
            key="adv_compare",
            help="models trained on the same data, e.g. the adversarially trained twin",
        )
        if twins
        else []
    )
    n, grid = curve_plan(mode)
    # Once asked for, a model's curve in a mode stays on; another mode (a suite costs more) is asked for again.
    done = st.session_state.setdefault("adv_curves_shown", set())
    if (key, mode) not in done:
        ask = st.empty()  # the offer disappears once the curve is drawn
        with ask.container():
            st.caption(curve_offer(mode))
            clicked = st.button("Compute the robustness curve", key="adv_curve")
        if not clicked:
            return
        ask.empty()
    curves, checks, breakdowns, counts, clean = [], [], [], [], {}
    chance = 0.0
    for model_key in (key, *compare):
        if isinstance(loaded := state.try_entry(model_key), state.LoadFailure):
            st.warning(f"{state.label(model_key)} could not be loaded: {loaded.message}")
            continue
        model_name = loaded.name
        with st.spinner(
            f"Attacking {min(n, loaded.n)} {model_name} images at {len(grid)} budgets ({CURVE_MODE_LABELS[mode]}, "
            "cached)…"
        ):
            c = robustness(model_key, mode)
        n = c.n
        clean[model_name], chance = c.clean, c.chance
        curves.append(c.rows.assign(model=model_name))
        checks.append(c.checks.assign(model=model_name))
        if c.breakdown is not None:
            breakdowns.append(c.breakdown.assign(model=model_name))
            counts.append(c.broken_by.assign(model=model_name))
    if not curves:
        return
    done.add((key, mode))
    data = curve_data(curves, clean, chance, suite=mode != FGSM_PGD)
    title = " vs ".join(clean)
    what = "robust accuracy" if mode != FGSM_PGD else "accuracy under attack"
    st.vega_lite_chart(
        data,
        charts.lines(
            data, x="eps_255", y="accuracy", color="curve", title=f"{title}: {what} ({n} test images)",
            x_title="ε × 255", y_title="accuracy",
        ),
        width="stretch",
    )  # fmt: skip
    st.caption(
        "clean accuracy on these images: "
        + ", ".join(f"{m} {a:.1%}" for m, a in clean.items())
        + f"; chance {chance:.1%}"
        + (
            "; each line is the accuracy after the attacks it names (cumulative), the last one the suite's "
            "robust accuracy; ε = 0 is the clean accuracy (not attacked)"
            if mode != FGSM_PGD
            else ""
        )
    )
    if breakdowns:
        st.markdown("**Per attack** (robust accuracy after each attack, cumulative; examples it ran on; seconds)")
        table = pd.concat(breakdowns, ignore_index=True)
        st.dataframe(
            table[["model", "eps_255", "attack", "robust accuracy after", "examples attacked", "seconds"]],
            hide_index=True, width="stretch",
            column_config={
                "eps_255": st.column_config.NumberColumn("ε × 255", format="%g"),
                "robust accuracy after": st.column_config.NumberColumn(format="%.3f"),
                "seconds": st.column_config.NumberColumn(format="%.1f"),
            },
        )  # fmt: skip
        st.markdown("**First attack to break each example** (clean: misclassified without attack; robust: none did)")
        table = pd.concat(counts, ignore_index=True)
        st.dataframe(
            table[["model", *[c for c in table.columns if c != "model"]]], hide_index=True, width="stretch",
            column_config={"eps_255": st.column_config.NumberColumn("ε × 255", format="%g")},
        )  # fmt: skip
    st.markdown("**Sanity checks** (Carlini et al. 2019)")
    table = pd.concat(checks, ignore_index=True)
    st.dataframe(table[["model", "check", "result", "detail"]], hide_index=True, width="stretch")
    rows = pd.concat(curves, ignore_index=True)
    st.download_button(
        "Download the curves (CSV)",
        rows.drop(columns="line").to_csv(index=False),
        f"{e.stem}_robustness_{mode}.csv",
        "text/csv",
        key="adv_dl",
        on_click="ignore",
    )


def main() -> None:
    st.title("Adversarial lab")
    options = state.models_for("image")
    if not options:
        st.info("No image model is loaded: pass one with --model SPEC (an (H, W, 1) or (H, W, 3) classifier).")
        return
    key = st.selectbox(
        "Model", options, key="adv_model", format_func=state.label, help="an image model: shipped, or yours (--model)"
    )
    e = state.entry_or_error(key)
    if e is None:
        return
    if not e.n:
        st.info(f"{e.name} came without data: pass --data PATH (images) after its --model to attack them.")
        return
    attack_section(key, e)
    robustness_section(key, e)


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.adversarial.*) and definitions are made once.
    from dashboard.adversarial import main as _main

    _main()
