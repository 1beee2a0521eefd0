"""Adversarial lab: FGSM / PGD on one test image, the saliency before and after, the model's robustness curve."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, state
from dashboard.common import as_pil, enlarge
from explain import adversarial, viz
from explain.adversarial import evaluation, explanations
from explain.saliency import registry

CURVE_EXAMPLES = 64  # robustness curve sample: the first test images
CURVE_EPS_255 = (0, 1, 2, 4, 8, 16)  # ε grid in 1/255 units
CURVE_PGD_STEPS = 10
ATTACKS = ("FGSM", "PGD")


class Attacked(NamedTuple):
    """One attacked image: ``x_adv (H, W, C)``, clean and adversarial probabilities ``(K,)``, norms of δ."""

    x_adv: np.ndarray
    p_clean: np.ndarray
    p_adv: np.ndarray
    success: bool
    linf: float
    l2: float


@st.cache_data(show_spinner=False, max_entries=256)
def attack(name: str, index: int, kind: str, eps: float, steps: int, goal: int | None, seed: int) -> Attacked:
    """FGSM or PGD (L∞) on test image ``index``, away from the predicted class or towards the class ``goal``."""
    b = state.bundle(name)
    x = b.dataset.test.x[index : index + 1]
    if kind == "FGSM":
        r = adversarial.fgsm(b.model, x, eps=eps, goal=goal)
    else:
        r = adversarial.pgd(b.model, x, eps=eps, steps=steps, key=jax.random.key(seed), goal=goal)
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
def saliency_pair(name: str, x: np.ndarray, x_adv: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Gradient saliency of the predicted class on clean and adversarial input, with top-10% overlap and Spearman ρ."""
    b = state.bundle(name)
    both = np.stack([x, x_adv])
    g = registry.call("vanilla_gradient", b.model, both, target="pred").to_numpy().values
    flat = np.abs(g).sum(-1).reshape(1, 2, -1)
    k = max(1, flat.shape[-1] // 10)
    overlap = float(explanations.topk_overlap(flat[:, 0], flat[:, 1], k)[0])
    rho = float(explanations.spearman(flat[:, 0], flat[:, 1])[0])
    return g[0], g[1], overlap, rho


@st.cache_data(show_spinner=False, max_entries=16)
def robustness(name: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, float, float]:
    """Accuracy against ε for FGSM and PGD on the first test images, and the sanity checks; cached per model."""
    b = state.bundle(name)
    x, y = b.dataset.test.x[:CURVE_EXAMPLES], b.dataset.test.y[:CURVE_EXAMPLES]
    attacks = {
        "FGSM": adversarial.AttackConfig("fgsm", steps=1, random_start=False),
        f"PGD-{CURVE_PGD_STEPS}": adversarial.AttackConfig("pgd", steps=CURVE_PGD_STEPS),
    }
    report = evaluation.evaluate_robustness(
        b.model,
        x,
        labels=y,
        attacks=attacks,
        eps=[e / 255 for e in CURVE_EPS_255],
        key=jax.random.key(seed),
        large_eps_examples=CURVE_EXAMPLES,
    )
    rows = pd.DataFrame([dataclasses.asdict(r) for r in report.rows])
    rows["eps_255"] = rows["eps"] * 255
    checks = pd.DataFrame(
        {
            "check": [c.name for c in report.checks],
            "result": [{True: "passed", False: "FAILED", None: "skipped"}[c.passed] for c in report.checks],
            "detail": [c.detail for c in report.checks],
        }
    )
    return rows, checks, report.clean_accuracy, report.chance


def describe(classes, p: np.ndarray) -> str:
    k = int(p.argmax())
    return f"{classes[k]} ({p[k]:.1%})"


def perturbation_image(delta: np.ndarray):
    """δ amplified to the full grey range: ``0.5 + δ / (2 max|δ|)``; returns the image and the gain."""
    m = float(np.abs(delta).max())
    gain = 0.5 / m if m > 0 else 1.0
    return as_pil(0.5 + delta * gain), 2 * gain


def attack_section(name: str, b) -> None:
    classes = list(b.model.class_names)
    test = b.dataset.test
    with st.sidebar:
        st.subheader("Attack")
        index = int(st.number_input("Test image", 0, len(test) - 1, 0, key="adv_index"))
        kind = st.radio(
            "Attack", ATTACKS, horizontal=True, key="adv_attack", help="both L∞, labels = the model's prediction"
        )
        eps255 = st.slider("ε (× 1/255, L∞)", 0.0, 32.0, 8.0, 0.5, key="adv_eps")
        steps = st.slider("PGD steps", 1, 50, 10, key="adv_steps", disabled=kind != "PGD")
        targeted = st.checkbox("Targeted", key="adv_targeted")
        target_name = st.selectbox(
            "Goal class", classes, index=1 % len(classes), key="adv_target", disabled=not targeted
        )
        seed = int(st.number_input("Seed (PGD random start)", 0, 2**31 - 1, 0, key="adv_seed"))
    goal = classes.index(target_name) if targeted else None
    with st.spinner(f"Running {kind}…"):
        a = attack(name, index, kind, eps255 / 255, int(steps), goal, seed)
    x = test.x[index]
    if targeted and int(np.argmax(a.p_clean)) == goal:
        st.info(f"The model already predicts '{target_name}' for this image: a targeted attack towards it is trivial.")
    verdict = "succeeded" if a.success else "failed"
    aim = f"towards '{target_name}'" if targeted else "away from the prediction"
    st.markdown(
        f"**{kind} {verdict}** ({aim}, ε = {eps255:g}/255): "
        f"**{describe(classes, a.p_clean)} → {describe(classes, a.p_adv)}** · true label: {classes[int(test.y[index])]}"
    )
    delta = a.x_adv - x
    pert, gain = perturbation_image(delta)
    c1, c2, c3 = st.columns(3)
    c1.image(enlarge(as_pil(x)), caption=f"original: {describe(classes, a.p_clean)}")
    c2.image(
        enlarge(pert),
        caption=f"perturbation ×{gain:.0f}: ‖δ‖∞ = {a.linf * 255:.2f}/255, ‖δ‖₂ = {a.l2:.3f}",
    )
    c3.image(enlarge(as_pil(a.x_adv)), caption=f"adversarial: {describe(classes, a.p_adv)}")

    st.subheader("Saliency before and after")
    g_clean, g_adv, overlap, rho = saliency_pair(name, x, a.x_adv)
    s1, s2, s3 = st.columns(3)
    s1.image(enlarge(viz.overlay(x, g_clean, alpha=0.7)), caption=f"gradient, clean ({describe(classes, a.p_clean)})")
    s2.image(
        enlarge(viz.overlay(a.x_adv, g_adv, alpha=0.7)), caption=f"gradient, adversarial ({describe(classes, a.p_adv)})"
    )
    s3.metric("top-10% overlap", f"{overlap:.0%}")
    s3.metric("Spearman ρ of the maps", f"{rho:.2f}")


def robustness_section(name: str) -> None:
    st.subheader("Robustness curve")
    twins = state.twins(name)
    compare = (
        st.multiselect(
            "Compare with",
            twins,
            key="adv_compare",
            help="models trained on the same data, e.g. the adversarially trained twin",
        )
        if twins
        else []
    )
    done = st.session_state.setdefault("adv_curves_shown", set())  # once asked for, a model's curve stays on
    if name not in done:
        ask = st.empty()  # the offer disappears once the curve is drawn
        with ask.container():
            st.caption(
                f"FGSM and PGD-{CURVE_PGD_STEPS} on the first {CURVE_EXAMPLES} test images at ε ∈ "
                f"{list(CURVE_EPS_255)}/255, with the sanity checks. The first request per model takes a while; "
                "the result is cached for every session."
            )
            clicked = st.button("Compute the robustness curve", key="adv_curve")
        if not clicked:
            return
        ask.empty()
    curves, checks, clean = [], [], {}
    for model_name in (name, *compare):
        if isinstance(failure := state.try_bundle(model_name), state.LoadFailure):
            st.warning(f"{model_name} could not be loaded: {failure.message}")
            continue
        with st.spinner(
            f"Attacking {CURVE_EXAMPLES} {model_name} test images at {len(CURVE_EPS_255)} budgets (cached)…"
        ):
            rows, model_checks, clean[model_name], chance = robustness(model_name)
        curves.append(rows.assign(model=model_name))
        checks.append(model_checks.assign(model=model_name))
    done.add(name)
    rows = pd.concat(curves, ignore_index=True)
    rows["curve"] = rows["attack"] if not compare else rows["model"] + " · " + rows["attack"]
    chance_rows = pd.DataFrame({"curve": "chance", "eps_255": rows["eps_255"].unique(), "accuracy": chance})
    data = pd.concat([rows[["curve", "eps_255", "accuracy"]], chance_rows], ignore_index=True)
    title = " vs ".join(clean)
    st.vega_lite_chart(
        data,
        charts.lines(
            data, x="eps_255", y="accuracy", color="curve", title=f"{title}: accuracy under attack ({CURVE_EXAMPLES} test images)",
            x_title="ε × 255", y_title="accuracy",
        ),
        width="stretch",
    )  # fmt: skip
    st.caption(
        "clean accuracy on these images: "
        + ", ".join(f"{m} {a:.1%}" for m, a in clean.items())
        + f"; chance {chance:.1%}"
    )
    st.markdown("**Sanity checks** (Carlini et al. 2019)")
    table = pd.concat(checks, ignore_index=True)
    st.dataframe(table[["model", "check", "result", "detail"]], hide_index=True, width="stretch")
    st.download_button(
        "Download the curves (CSV)",
        rows.drop(columns="curve").to_csv(index=False),
        f"{name}_robustness.csv",
        "text/csv",
        key="adv_dl",
        on_click="ignore",
    )


def main() -> None:
    st.title("Adversarial lab")
    name = st.selectbox(
        "Model", state.image_models(), key="adv_model", help="A shipped image model (standard or robust)"
    )
    b = state.bundle_or_error(name)
    if b is None:
        return
    attack_section(name, b)
    robustness_section(name)


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.adversarial.*) and definitions are made once.
    from dashboard.adversarial import main as _main

    _main()
