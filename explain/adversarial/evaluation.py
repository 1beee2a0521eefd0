"""Robustness evaluation: accuracy against ε per attack, with the sanity checks that keep it honest.

A robustness number is only as good as the attack behind it. Every
evaluation runs the checks of Carlini et al. (2019) and AutoAttack's flags
(Croce & Hein 2020) and reports each as passed, failed or skipped:

* ``eps0_is_clean``: accuracy at ε = 0 equals clean accuracy.
* ``monotone_in_eps``: accuracy does not rise with ε (beyond ``tol``).
* ``iterative_beats_single_step``: an iterative attack is at least as strong as
  FGSM of the same norm at every ε.
* ``large_eps_reaches_chance``: at a large ε (half the input range) PGD drives
  accuracy to chance ``1/K`` or below; otherwise suspect gradient masking.
* ``loss_rises``: the mean loss at the attack's last iterate exceeds its first.
* ``no_zero_gradients``: no example has an all-zero input gradient of the loss.
* ``outputs_are_logits``: outputs do not look like probabilities (rows in
  [0, 1] summing to 1), whose saturated softmax hides gradients.
* ``label_source``: states whether the attack used predictions or ground truth.
* ``loss_gradient_float64``: on a sample, the share of examples whose float32 input
  gradient of the attack loss disagrees in sign with a float64 recomputation on more
  than 1% of its significant pixels; flagged above 1% of examples (a saturated or
  cancelling loss weakens every gradient attack silently).
* ``margin_loss_not_stronger``: a margin-loss attack (CW, DLR, targeted DLR) is not
  markedly stronger (by more than ``margin_tol``) than the cross-entropy attack at the
  same budget; otherwise "CE saturation or gradient masking suspected".
* ``gradient_free_not_stronger``: Square (no gradients) breaks no more than ``tol``
  beyond every gradient attack; otherwise gradient masking (AutoAttack's flag).

``suite="rapid" | "standard"`` runs :mod:`explain.adversarial.suite` instead of a
table of independent attacks: the robust accuracy after each attack is cumulative.

References:
  Carlini et al. (2019), On evaluating adversarial robustness.
  Croce & Hein (2020), Reliable evaluation of adversarial robustness with an ensemble of
  diverse parameter-free attacks (AutoAttack).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from explain import chunking
from explain.adversarial import attacks as A
from explain.adversarial.suite import MARGIN_LOSSES, SUITES, SuiteResult, run_suite, suite_attacks
from explain.adversarial.sweep import (
    AttackBatch,
    Budget,
    Budgets,
    SweepResult,
    bind,
    check_config,
    check_eps,
    sweep_batch,
)
from explain.arrays import Batch
from explain.checks import check_choice, check_float, check_int, check_key
from explain.gradients import forward, target_and_grad
from explain.io import atomic_write_bytes, atomic_write_text
from explain.model import Model, as_model
from explain.results import Result
from explain.targets import BoundTarget

LabelChoice = Literal["predictions", "labels"]
LABEL_CHOICES: tuple[str, ...] = ("predictions", "labels")


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the robustness table: an attack at one ε over ``n`` examples."""

    attack: str
    norm: str
    eps: float
    n: int
    accuracy: float  # against the ground-truth labels
    success_rate: float  # flipped, among examples whose clean prediction equals the attack label
    norm_mean: float
    norm_median: float
    label_source: str


ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))


@dataclasses.dataclass(frozen=True)
class Check:
    """``passed``: True, False, or None when the check could not run (``detail`` says why)."""

    name: str
    passed: bool | None
    detail: str


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RobustnessReport(Result):
    """The table, the sanity checks and the sweeps behind them (the only array leaves)."""

    sweeps: dict[str, SweepResult]
    model: str = dataclasses.field(metadata=dict(static=True))
    rows: tuple[Row, ...] = dataclasses.field(metadata=dict(static=True))
    checks: tuple[Check, ...] = dataclasses.field(metadata=dict(static=True))
    clean_accuracy: float = dataclasses.field(metadata=dict(static=True))
    chance: float = dataclasses.field(metadata=dict(static=True))
    label_source: str = dataclasses.field(metadata=dict(static=True))
    value_range: tuple[float, float] | None = dataclasses.field(metadata=dict(static=True))
    suite: str | None = dataclasses.field(default=None, metadata=dict(static=True))
    suite_results: tuple[SuiteResult, ...] = dataclasses.field(default=(), metadata=dict(static=True))

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.passed is False)


def _accuracy(outputs: Any, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(np.asarray(outputs), axis=1) == labels))


def table_rows(name: str, s: SweepResult, labels: np.ndarray) -> list[Row]:
    """Rows of the table for one sweep; accuracy is against the ground-truth ``labels``."""
    pred = np.argmax(np.asarray(s.results[0].outputs_clean), axis=1)
    attackable = pred != np.asarray(s.goal) if s.targeted else pred == np.asarray(s.labels)
    rows = []
    for r in s.results:
        succ = np.asarray(r.success)
        norms = np.asarray(r.norms, np.float64)
        rate = float(succ[attackable].mean()) if attackable.any() else float("nan")
        rows.append(
            Row(
                name,
                s.config.norm,
                r.eps,
                len(labels),
                _accuracy(r.outputs_adv, labels),
                rate,
                float(norms.mean()),
                float(np.median(norms)),
                s.label_source,
            )
        )
    return rows


def _check_eps0(rows: Sequence[Row], clean: float) -> Check:
    at0 = [r for r in rows if r.eps == 0.0]
    if not at0:
        return Check("eps0_is_clean", None, "ε = 0 is not in the grid: not checked")
    bad = [f"{r.attack}: {r.accuracy:.4f}" for r in at0 if abs(r.accuracy - clean) > 1e-12]
    return Check(
        "eps0_is_clean", not bad, f"clean accuracy {clean:.4f}" + (f"; at ε = 0 got {', '.join(bad)}" if bad else "")
    )


def _check_monotone(by_attack: Mapping[str, list[Row]], tol: float) -> Check:
    bad = []
    for name, rows in by_attack.items():
        rows = sorted(rows, key=lambda r: r.eps)
        bad += [
            f"{name} {a.eps:.4g}->{b.eps:.4g}: {a.accuracy:.4f}->{b.accuracy:.4f}"
            for a, b in zip(rows, rows[1:])
            if b.accuracy > a.accuracy + tol
        ]
    return Check(
        "monotone_in_eps",
        not bad,
        "accuracy falls or stays as ε grows" if not bad else "accuracy rises: " + "; ".join(bad),
    )


def _check_iterative(by_attack: Mapping[str, list[Row]], kinds: Mapping[str, A.AttackConfig], tol: float) -> Check:
    singles = [n for n, c in kinds.items() if c.kind == "fgsm"]
    iters = [n for n, c in kinds.items() if c.kind == "pgd"]
    pairs = [(i, s) for i in iters for s in singles if kinds[i].norm == kinds[s].norm]
    if not pairs:
        return Check(
            "iterative_beats_single_step", None, "needs an FGSM and an iterative attack of the same norm: not checked"
        )
    bad = []
    for i, s in pairs:
        fg = {r.eps: r.accuracy for r in by_attack[s]}
        bad += [
            f"{i} {r.eps:.4g}: {r.accuracy:.4f} > {s} {fg[r.eps]:.4f}"
            for r in by_attack[i]
            if r.eps in fg and r.accuracy > fg[r.eps] + tol
        ]
    return Check(
        "iterative_beats_single_step", not bad, "iterative ≤ FGSM accuracy at every ε" if not bad else "; ".join(bad)
    )


def _check_loss_rises(sweeps: Mapping[str, SweepResult], suites: Sequence[SuiteResult] = ()) -> Check:
    pairs = [
        (f"{name} ε={r.eps:.4g}", *np.asarray(r.objective_trace)[[0, -1]])
        for name, s in sweeps.items()
        for r in s.results
        if r.eps > 0
    ]
    pairs += [
        (f"{name} ε={r.eps:.4g}", a, z)
        for r in suites
        for name, a, z in zip(r.attacks, r.objective_start, r.objective_end)
        if r.eps > 0 and np.isfinite(a)
    ]
    if not pairs:
        return Check("loss_rises", None, "no attack ran at ε > 0: not checked")
    bad = [f"{what}: {a:.4g} -> {z:.4g}" for what, a, z in pairs if not z > a]
    return Check(
        "loss_rises",
        not bad,
        "mean attack loss rises from first to last iterate" if not bad else "loss did not rise: " + "; ".join(bad),
    )


def zero_gradient_rows(
    apply: Any, params: Any, x: Float[Array, " n *features"], target: BoundTarget
) -> Bool[Array, " n"]:
    """Pure: which rows have an all-zero ∂target/∂x (``(N,)`` bool): attacks cannot move them."""
    _, g, _ = target_and_grad(apply, params, x, target)
    return jnp.all(g.reshape(g.shape[0], -1) == 0, axis=1)


_zero_gradient_rows = jax.jit(zero_gradient_rows, static_argnums=0)


def _check_gradients(b: AttackBatch, memory_budget: int | None) -> Check:
    m = b.model
    rows = chunking.rows_per_chunk(m, memory_budget=memory_budget, dtype=b.x.dtype)
    fn = functools.partial(_zero_gradient_rows, m.apply, m.params)
    zero = int(np.sum(chunking.map_rows(fn, b.x, b.objective, batch=rows)))
    detail = f"{zero} of {b.n} examples have an all-zero input gradient of the loss"
    return Check(
        "no_zero_gradients",
        zero == 0,
        detail + ("" if zero == 0 else " (attacks cannot move them: gradient masking or dead units)"),
    )


_grad = jax.jit(target_and_grad, static_argnums=0)
SIGN_AGREEMENT = 0.99  # an example disagrees when fewer of its significant pixels share the float64 sign
SIGNIFICANT = 1e-4  # pixels whose float64 gradient is at least this share of the example's largest


def sign_disagreement(g32: np.ndarray, g64: np.ndarray) -> np.ndarray:
    """Per example ``(N,)``: whether under 99% of its significant pixels (``|g64| ≥ 1e-4·max|g64|``) agree in sign."""
    a = np.asarray(g32, np.float64).reshape(len(g32), -1)
    b = np.asarray(g64, np.float64).reshape(len(g64), -1)
    big = np.abs(b) >= SIGNIFICANT * np.abs(b).max(axis=1, keepdims=True)
    big &= np.abs(b) > 0
    agree = np.sum((np.sign(a) == np.sign(b)) & big, axis=1) / np.maximum(big.sum(axis=1), 1)
    return (agree < SIGN_AGREEMENT) & big.any(axis=1)


def _check_float64(b: AttackBatch, m: int) -> Check:
    name = "loss_gradient_float64"
    sub = b.rows(slice(0, min(m, b.n)))
    x = jnp.asarray(sub.x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype == jnp.float64:
        return Check(name, None, f"inputs are {x.dtype}: no float32 gradient to compare")
    _, g32, _ = _grad(b.model.apply, b.model.params, x, sub.objective)
    to64 = lambda a: a.astype(jnp.float64) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a  # noqa: E731
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(to64, b.model.params)
        objective = jax.tree_util.tree_map(to64, sub.objective)
        _, g64, out = _grad(b.model.apply, params, x.astype(jnp.float64), objective)
        if out.dtype != jnp.float64:
            return Check(name, None, f"the model computes in {out.dtype} even from float64 weights: not checked")
        g64 = np.asarray(g64)
    bad = sign_disagreement(np.asarray(g32), g64)
    share = float(bad.mean())
    detail = (
        f"{int(bad.sum())} of {len(bad)} examples have a float32 loss gradient whose sign disagrees with float64 "
        f"on over {1 - SIGN_AGREEMENT:.0%} of their pixels"
    )
    ok = share <= 0.01
    return Check(name, ok, detail + ("" if ok else " (saturated or cancelling loss: attacks are weakened)"))


def _margin_gap(by_attack, attacks, suites) -> list[tuple[str, float]]:
    """(what, accuracy the margin-loss attacks removed beyond the CE attack) per comparable pair and ε."""
    if suites:
        out = []
        for r in suites:
            ce = [i for i, a in enumerate(r.attacks) if attacks[a].loss == "ce" and attacks[a].kind != "square"]
            mg = [
                i for i, a in enumerate(r.attacks) if attacks[a].loss in MARGIN_LOSSES and attacks[a].kind != "square"
            ]
            if ce and mg and max(mg) > min(ce) and r.eps > 0:
                out.append((f"ε={r.eps:.4g}", r.robust_after[min(ce)] - r.robust_after[max(mg)]))
        return out
    out = []
    for c, cc in attacks.items():
        for g, gc in attacks.items():
            if cc.loss == "ce" and gc.loss in MARGIN_LOSSES and (cc.kind, cc.norm) == (gc.kind, gc.norm):
                ce_acc = {r.eps: r.accuracy for r in by_attack[c]}
                out += [(f"{g} vs {c} ε={r.eps:.4g}", ce_acc[r.eps] - r.accuracy) for r in by_attack[g] if r.eps > 0]
    return out


def _check_margin(by_attack, attacks, suites, margin_tol: float) -> Check:
    name = "margin_loss_not_stronger"
    gaps = _margin_gap(by_attack, attacks, suites)
    if not gaps:
        return Check(
            name, None, "needs a cross-entropy and a margin-loss attack of the same kind and norm: not checked"
        )
    worst = max(gaps, key=lambda t: t[1])
    ok = worst[1] <= margin_tol
    detail = f"margin-loss attacks lower accuracy by at most {worst[1]:.4f} beyond cross-entropy ({worst[0]})"
    return Check(name, ok, detail + ("" if ok else "; CE saturation or gradient masking suspected"))


def _check_gradient_free(by_attack, attacks, suites, tol: float) -> Check:
    name = "gradient_free_not_stronger"
    free = [a for a, c in attacks.items() if c.kind == "square"]
    grads = [a for a, c in attacks.items() if c.kind != "square"]
    if not free or not grads:
        return Check(name, None, "needs a gradient-free (Square) and a gradient attack: not checked")
    gaps = []
    for r in suites:
        i = r.attacks.index(free[0])
        if i > 0 and r.eps > 0:
            gaps.append((f"ε={r.eps:.4g}", r.robust_after[i - 1] - r.robust_after[i]))
    if not suites:
        for f in free:
            for r in (r for r in by_attack[f] if r.eps > 0):
                best = min(row.accuracy for g in grads for row in by_attack[g] if row.eps == r.eps)
                gaps.append((f"{f} ε={r.eps:.4g}", best - r.accuracy))
    if not gaps:
        return Check(name, None, "Square ran before every gradient attack: not checked")
    worst = max(gaps, key=lambda t: t[1])
    ok = worst[1] <= tol + 1e-12
    detail = f"Square lowers accuracy by {worst[1]:.4f} beyond the gradient attacks ({worst[0]})"
    return Check(name, ok, detail + ("" if ok else "; gradient masking suspected"))


def _check_logits(outputs: Any) -> Check:
    out = np.asarray(outputs, np.float64)
    probs = out.min() >= 0 and out.max() <= 1 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
    detail = "outputs look like probabilities (rows in [0, 1] summing to 1): attack logits, since softmax saturation hides gradients"
    return Check("outputs_are_logits", not probs, detail if probs else "outputs are unnormalised scores (logits)")


def _check_true_labels(model: Model, labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"expected labels of shape ({n},) (ground-truth classes), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= model.num_outputs:
        raise ValueError(
            f"expected integer classes in 0..{model.num_outputs - 1} in labels, got dtype {y.dtype}, "
            f"range [{y.min()}, {y.max()}]"
        )
    return y


def evaluate_robustness(
    model: Model | Any,
    x: Batch,
    *,
    labels: Any,
    eps: Budgets,
    key: jax.Array | None,
    attacks: Mapping[str, A.AttackConfig] | None = None,
    suite: str | None = None,
    norm: str = "linf",
    label_source: str = "predictions",
    large_eps: Budget | None = None,
    large_eps_examples: int = 256,
    precision_examples: int = 64,
    tol: float | None = None,
    margin_tol: float | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> RobustnessReport:
    """Accuracy, success rate and perturbation norms per attack and ε, plus the sanity checks.

    ``x`` is validated and the attack labels bound once (:func:`~explain.adversarial.sweep.bind`),
    and every attack and check runs on that one bound batch.

    Args:
      model: a classification :class:`~explain.model.Model`.
      x: ``(N, *input_spec.shape)``.
      labels: ``(N,)`` ground-truth classes (accuracy is always against them).
      eps: the ε grid (include 0 to check the clean point).
      key: PRNG key for random starts (attack ``i`` uses ``fold_in(key, i)``).
      attacks: name -> :class:`~explain.adversarial.attacks.AttackConfig`, each run on every
        example independently; or
      suite: ``"rapid"`` or ``"standard"`` (:mod:`explain.adversarial.suite`): attacks in sequence
        on the points still robust, worst case per example, in norm ``norm``. Exactly one of the two.
      label_source: the labels attacks move away from: the model's ``"predictions"``
        (default, no label leaking) or the ground-truth ``"labels"``.
      large_eps: ε of the chance-level check; default half the input range (skipped without a range).
      large_eps_examples: examples used by that check (the first ones).
      precision_examples: examples of the float64 recomputation (the first ones).
      tol: slack of the ordering checks, default one example (``1/N``).
      margin_tol: how much lower a margin-loss attack's accuracy may be than the CE attack's;
        default 0.05, and never less than ``tol`` (one example).
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).
      show_progress: progress bars over chunks of rows.

    Returns:
      :class:`RobustnessReport`; ``report.failed`` lists the failed checks.

    Raises:
      ValueError / TypeError: every argument is checked before anything compiles.
    """
    check_choice("label_source", label_source, LABEL_CHOICES)
    if (attacks is None) == (suite is None):
        raise ValueError(f"give attacks= (name -> AttackConfig) or suite= (one of {list(SUITES)}), exactly one")
    if suite is not None:
        attacks = suite_attacks(suite, check_choice("norm", norm, A.NORMS))
    if not attacks:
        raise ValueError("expected at least one attack in attacks=")
    eps = sorted(check_eps(eps, sequence=True))
    check_key(key, what="evaluate_robustness")
    model = as_model(model)
    for cfg in attacks.values():
        check_config(cfg, key, model)
    large_eps_examples = check_int("large_eps_examples", large_eps_examples)
    precision_examples = check_int("precision_examples", precision_examples)
    if large_eps is not None:
        large_eps = check_float("large_eps", large_eps)
    n = np.shape(x)[0] if np.ndim(x) else 0
    y = _check_true_labels(model, labels, n)
    tol = 1.0 / n if tol is None else check_float("tol", tol)
    margin_tol = max(0.05, tol) if margin_tol is None else check_float("margin_tol", margin_tol, minimum=0.0)
    b = bind(model, x, labels=y if label_source == "labels" else None, memory_budget=memory_budget)
    run = functools.partial(sweep_batch, keep_inputs=False, memory_budget=memory_budget, show_progress=show_progress)
    sweeps, rows, suites = {}, [], []
    if suite is None:
        for i, (name, cfg) in enumerate(attacks.items()):
            sweeps[name] = s = run(b, eps, config=cfg, key=jax.random.fold_in(key, i))
            rows += table_rows(name, s, y)
        outputs = np.asarray(next(iter(sweeps.values())).results[0].outputs_clean)
    else:
        outputs = forward(model, b.x, memory_budget=memory_budget)
        for e in eps:
            suites.append(
                run_suite(b, y, outputs, e, attacks, key=key, memory_budget=memory_budget, show_progress=show_progress)
            )
            rows += suite_rows(suites[-1], attacks, label_source)
    clean = _accuracy(outputs, y)
    k = model.num_outputs
    by_attack = {name: [r for r in rows if r.attack == name] for name in attacks}
    checks = [
        _check_eps0(rows, clean),
        _check_monotone(by_attack, tol),
        _check_iterative(by_attack, attacks, tol),
        _check_large_eps(b, y, attacks, large_eps, large_eps_examples, key, 1.0 / k, run),
        _check_loss_rises(sweeps, suites),
        _check_gradients(b, memory_budget),
        _check_float64(b, precision_examples),
        _check_margin(by_attack, attacks, suites, margin_tol),
        _check_gradient_free(by_attack, attacks, suites, tol),
        _check_logits(outputs),
        Check(
            "label_source",
            True,
            f"attacks move away from the model's {label_source}"
            + (" (ground truth)" if label_source == "labels" else " (no label leaking)"),
        ),
    ]
    return RobustnessReport(
        sweeps=sweeps,
        model=model.name,
        rows=tuple(rows),
        checks=tuple(checks),
        clean_accuracy=clean,
        chance=1.0 / k,
        label_source=label_source,
        value_range=b.value_range,
        suite=suite,
        suite_results=tuple(suites),
    )


def suite_rows(r: SuiteResult, attacks: Mapping[str, A.AttackConfig], label_source: str) -> list[Row]:
    """One row per attack of a suite at one ε: cumulative accuracy, success among the examples it ran on."""
    rows = []
    for i, name in enumerate(r.attacks):
        mine = np.array([b == name for b in r.broken_by])
        norms = r.norms[mine]
        rows.append(
            Row(
                name, attacks[name].norm, r.eps, len(r.broken_by), r.robust_after[i],
                float(mine.sum() / r.attacked[i]) if r.attacked[i] else float("nan"),
                float(norms.mean()) if norms.size else 0.0, float(np.median(norms)) if norms.size else 0.0,
                label_source,
            )
        )  # fmt: skip
    return rows


def _check_large_eps(b: AttackBatch, y, attacks, large_eps, m, key, chance, run) -> Check:
    vr = b.value_range
    if large_eps is None:
        if vr is None:
            return Check(
                "large_eps_reaches_chance", None, "no input range declared and no large_eps given: not checked"
            )
        large_eps = 0.5 * (vr[1] - vr[0])
        default_large_eps = True
    else:
        default_large_eps = False
    iters = [c for c in attacks.values() if c.kind == "pgd"]
    norm = next(iter(attacks.values())).norm
    cfg = max(iters, key=lambda c: c.steps * c.restarts) if iters else A.AttackConfig("pgd", norm=norm, steps=20)
    cfg = A.AttackConfig(
        "pgd", norm=cfg.norm, steps=cfg.steps, rel_step_size=cfg.rel_step_size, random_start=True, restarts=cfg.restarts
    )
    sub = slice(0, min(m, len(y)))
    if default_large_eps and cfg.norm == "l2":  # half the range per coordinate, as an L2 radius
        large_eps = large_eps * float(np.sqrt(np.prod(b.model.input_spec.shape)))
    s = run(b.rows(sub), [large_eps], config=cfg, key=jax.random.fold_in(key, 10_000))
    acc = _accuracy(s.results[0].outputs_adv, y[sub])
    ok = acc <= chance + 1e-12
    detail = f"PGD-{cfg.steps} {cfg.norm} at ε = {large_eps:.4g} on {len(y[sub])} examples: accuracy {acc:.4f} vs chance {chance:.4f}"
    return Check(
        "large_eps_reaches_chance", ok, detail + ("" if ok else " (suspect gradient masking or a weak attack)")
    )


def write_csv(report: RobustnessReport, path: str | Path) -> Path:
    """The table, one row per attack and ε, with the clean accuracy and label source on every row (atomic write)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["model", *ROW_FIELDS, "clean_accuracy", "chance"])
    for r in report.rows:
        w.writerow([report.model, *dataclasses.astuple(r), report.clean_accuracy, report.chance])
    return atomic_write_text(path, buf.getvalue())


def plot(report: RobustnessReport, path: str | Path) -> Path:
    """Accuracy against ε, one line per attack, chance as a dashed line; saved as PNG (atomic write).

    Uses matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`), so no global
    backend or pyplot state is touched.
    """
    from matplotlib.figure import Figure

    linf = all(r.norm == "linf" for r in report.rows)
    scale = 255.0 if report.value_range == (0.0, 1.0) and linf else 1.0
    fig = Figure(figsize=(6, 4), dpi=110)
    ax = fig.subplots()
    for name in dict.fromkeys(r.attack for r in report.rows):
        rows = sorted((r for r in report.rows if r.attack == name), key=lambda r: r.eps)
        ax.plot([r.eps * scale for r in rows], [r.accuracy for r in rows], marker="o", label=f"{name} ({rows[0].norm})")
    ax.axhline(report.chance, ls="--", c="gray", lw=1, label="chance")
    ax.set_xlabel("ε × 255" if scale == 255.0 else "ε")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{report.model}: accuracy under attack (labels: {report.label_source})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    return atomic_write_bytes(path, png.getvalue())


def format_report(report: RobustnessReport) -> str:
    """A plain-text table and the checks, for the terminal."""
    lines = [
        f"model {report.model}: clean accuracy {report.clean_accuracy:.4f}, chance {report.chance:.4f}, "
        f"attack labels: {report.label_source}, input range: {report.value_range or 'none declared (adversarials not clipped)'}",
        f"{'attack':<10}{'norm':<6}{'eps':>10}{'eps*255':>9}{'accuracy':>10}{'success':>9}{'norm_mean':>11}{'norm_med':>10}",
    ]
    for r in report.rows:
        lines.append(
            f"{r.attack:<10}{r.norm:<6}{r.eps:>10.5f}{r.eps * 255:>9.2f}{r.accuracy:>10.4f}{r.success_rate:>9.4f}{r.norm_mean:>11.5f}{r.norm_median:>10.5f}"
        )
    for r in report.suite_results:
        lines.append(
            f"suite {report.suite} at ε = {r.eps:.5g} ({r.eps * 255:.2f}/255): robust accuracy {r.robust_accuracy:.4f}"
        )
        for name, acc, n, t in zip(r.attacks, r.robust_after, r.attacked, r.seconds):
            lines.append(f"  after {name:<9} {acc:.4f}  ({n} examples attacked, {t:.1f}s)")
    lines.append("sanity checks:")
    for c in report.checks:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[c.passed]
        lines.append(f"  [{mark}] {c.name}: {c.detail}")
    return "\n".join(lines)
