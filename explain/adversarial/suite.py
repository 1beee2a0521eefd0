"""AutoAttack-style suites: attacks run in sequence on the points still robust, worst case per example.

A suite's robust accuracy at ε is the share of examples that are classified
correctly and that no attack of the suite breaks. Each attack runs only on the
points every earlier attack left robust (a later attack cannot make an
example robust again), so the cost falls as the suite proceeds and the
robust accuracy after each attack is cumulative. Random draws use the rows'
ids in the whole batch, so an attack draws the same for an example whatever
ran before it.

* ``"standard"``: APGD-CE (100 steps), APGD-T (targeted DLR, 100 steps, the 9 best
  other classes), Square (5,000 queries): AutoAttack's standard suite (Croce & Hein
  2020) without FAB-T, whose minimal-norm search adds little at a fixed ε.
* ``"rapid"``: APGD-CE and APGD-T over the 3 best other classes, 50 steps each:
  a quick estimate (gradient attacks only, so no gradient-masking check).

References:
  Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse
  parameter-free attacks. ICML 2020.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from explain.adversarial import attacks as A
from explain.adversarial.sweep import AttackBatch, run_attack
from explain.checks import check_choice

SUITES: tuple[str, ...] = ("rapid", "standard")
CLEAN = "clean"  # broken_by of an example misclassified without attack
MARGIN_LOSSES: tuple[str, ...] = ("cw", "dlr", "dlr_targeted")


def suite_attacks(suite: str, norm: str = "linf") -> dict[str, A.AttackConfig]:
    """The attacks of a suite in the order they run: name -> config."""
    check_choice("suite", suite, SUITES)
    if suite == "rapid":
        return {
            "apgd-ce": A.AttackConfig("apgd", norm=norm, steps=50),
            "apgd-t": A.AttackConfig("apgd", norm=norm, steps=50, loss="dlr_targeted", target_classes=3),
        }
    return {
        "apgd-ce": A.AttackConfig("apgd", norm=norm, steps=100),
        "apgd-t": A.AttackConfig("apgd", norm=norm, steps=100, loss="dlr_targeted", target_classes=9),
        "square": A.AttackConfig("square", norm=norm, steps=5000, loss="cw", p_init=0.8),
    }


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    """A suite at one ε over ``N`` examples.

    Attributes:
      eps: the budget.
      attacks: the attacks' names in the order they ran.
      robust_after: robust accuracy (against the ground truth) after each attack, cumulative.
      attacked: how many examples each attack ran on (those still robust).
      seconds: wall time per attack.
      objective_start, objective_end: each attack's mean J at its first and last iterate
        over the examples it ran on (NaN when it ran on none).
      broken_by: per example, the name of the first attack that broke it, ``"clean"`` when
        it is misclassified without attack, ``""`` when it stayed robust.
      norms: per example, ‖x_adv − x‖ of its worst case (0 where nothing broke it).
      outputs_adv: ``(N, K)`` the worst case's outputs: the breaking attack's, else the clean ones.
    """

    eps: float
    attacks: tuple[str, ...]
    robust_after: tuple[float, ...]
    attacked: tuple[int, ...]
    seconds: tuple[float, ...]
    objective_start: tuple[float, ...]
    objective_end: tuple[float, ...]
    broken_by: tuple[str, ...]
    norms: np.ndarray = dataclasses.field(compare=False)
    outputs_adv: np.ndarray = dataclasses.field(compare=False)

    def __hash__(self) -> int:  # static metadata of a report: hashed by what it says, not by its arrays
        return hash((self.eps, self.attacks, self.robust_after, self.broken_by))

    @property
    def robust_accuracy(self) -> float:
        """The suite's robust accuracy: the worst case over every attack."""
        return self.robust_after[-1]


def run_suite(
    b: AttackBatch,
    y: np.ndarray,
    clean_outputs: np.ndarray,
    eps: float,
    attacks: dict[str, A.AttackConfig],
    *,
    key: jax.Array,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> SuiteResult:
    """The attacks in sequence at ``eps`` on the examples still robust; attack ``i`` uses ``fold_in(key, i)``.

    Args:
      b: the bound batch (untargeted; its labels are what the attacks move away from).
      y: ``(N,)`` ground-truth classes; clean_outputs: ``(N, K)`` outputs at ``x``.
    """
    robust = np.argmax(clean_outputs, axis=1) == y
    broken_by = np.where(robust, "", CLEAN).astype(object)
    norms = np.zeros(b.n, np.float64)
    worst = np.array(clean_outputs, copy=True)
    after, attacked, seconds, j0, j1 = [], [], [], [], []
    for i, (name, cfg) in enumerate(attacks.items()):
        idx = np.flatnonzero(robust)
        t0 = time.perf_counter()
        if idx.size:
            res = run_attack(
                b.rows(idx), np.full(idx.size, eps), config=cfg, key=jax.random.fold_in(key, i), row_ids=idx,
                memory_budget=memory_budget, show_progress=show_progress,
            )  # fmt: skip
            done = np.asarray(res["success"], bool)
            hit = idx[done]
            robust[hit] = False
            broken_by[hit] = name
            norms[hit] = np.asarray(res["norms"])[done]
            worst[hit] = np.asarray(res["outputs"])[done]
            trace = np.asarray(res["trace"], np.float64)
            j0.append(float(trace[:, 0].mean()))
            j1.append(float(trace[:, -1].mean()))
        else:
            j0.append(float("nan"))
            j1.append(float("nan"))
        seconds.append(time.perf_counter() - t0)
        attacked.append(int(idx.size))
        after.append(float(robust.mean()))
    return SuiteResult(
        eps=float(eps), attacks=tuple(attacks), robust_after=tuple(after), attacked=tuple(attacked),
        seconds=tuple(seconds), objective_start=tuple(j0), objective_end=tuple(j1),
        broken_by=tuple(str(v) for v in broken_by), norms=norms, outputs_adv=worst,
    )  # fmt: skip
