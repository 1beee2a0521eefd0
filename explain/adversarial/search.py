"""The smallest ε that flips each prediction: on a grid, or by bisection.

Each probe is one batched attack with a per-example ε ``(N,)``, so all
examples are searched together and every probe reuses one compiled function.
Bisection assumes success is monotone in ε, which holds for the attack's
reach (a larger ball contains the smaller) but not always for a finite-step
attack; the answer is an upper bound on the true minimal ε either way, and
the returned adversarial is a verified one at that ε.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Bool, Float

from explain.adversarial import attacks as A
from explain.adversarial.attacks import Host
from explain.adversarial.sweep import Budget, Budgets, LabelSource, bind, check_config, check_eps, run_attack
from explain.arrays import Batch
from explain.checks import check_choice, check_int
from explain.gradients import forward
from explain.model import Model
from explain.results import Result

Search = Literal["bisect", "grid"]
SEARCHES: tuple[str, ...] = ("bisect", "grid")
PGD10 = A.AttackConfig("pgd", steps=10)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MinEpsResult(Result):
    """``eps``: ``(N,)`` smallest ε found (``inf`` where none flips); ``found``: ``(N,)`` bool;
    ``x_adv``: ``(N, ...)`` the adversarial at that ε (``x`` where none); ``label_source`` as in sweeps."""

    eps: Float[Host, " n"]
    found: Bool[Host, " n"]
    x_adv: Float[Host, " n *features"]
    label_source: LabelSource = dataclasses.field(metadata=dict(static=True))


def min_eps(
    model: Model | Any,
    x: Batch,
    *,
    eps_max: Budget | None = None,
    grid: Budgets | None = None,
    search: str | None = None,
    bisect_steps: int = 8,
    config: A.AttackConfig = PGD10,
    key: jax.Array | None = None,
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> MinEpsResult:
    """Per example, the smallest ε at which ``config``'s attack succeeds.

    ``search`` defaults to ``"grid"`` when ``grid`` is given, else ``"bisect"``.
    ``search="grid"``: the first ε of the sorted ``grid`` that succeeds.
    ``search="bisect"``: checks ``eps_max``, then halves ``[lo, hi]`` per example
    ``bisect_steps`` times; the answer is within ``eps_max / 2**bisect_steps``.
    Examples already misclassified (untargeted, ``labels=`` given) or already at
    the goal get ε = 0. Probe ``i`` draws its random start from ``fold_in(key, i)``.

    Args:
      x: ``(N, *input_spec.shape)``; config, key, target, labels, goal, memory_budget,
        show_progress: as :func:`~explain.adversarial.sweep.sweep`.

    Raises:
      ValueError: unknown ``search``, missing ``eps_max``/``grid``, ε < 0, and the sweep's errors.
    """
    search = check_choice("search", search or ("grid" if grid is not None else "bisect"), SEARCHES)
    if search == "grid":
        if grid is None:
            raise ValueError("search='grid' needs grid=[eps, ...]")
        probes = sorted(check_eps(grid, sequence=True))
    else:
        if eps_max is None:
            raise ValueError("search='bisect' needs eps_max=")
        (eps_max,) = check_eps(eps_max, sequence=False)
        bisect_steps = check_int("bisect_steps", bisect_steps)
    config = check_config(config, key)
    b = bind(model, x, target=target, labels=labels, goal=goal, memory_budget=memory_budget)
    n = b.n
    expand = (-1,) + (1,) * (b.x.ndim - 1)

    def probe(eps_vec, i):
        k = jax.random.fold_in(key, i) if config.randomised else None
        res = run_attack(b, eps_vec, config=config, key=k, memory_budget=memory_budget, show_progress=show_progress)
        return res["success"], res["x_adv"]

    clean = forward(b.model, b.x, memory_budget=memory_budget)
    already = np.asarray(A.is_success(jnp.asarray(clean), labels=b.labels, goal=b.goal))
    best_eps = np.where(already, 0.0, np.inf)
    x_adv = np.array(b.x, copy=True)
    if search == "grid":
        for i, e in enumerate(probes):
            if e == 0.0:
                continue
            ok, xa = probe(np.full(n, e), i)
            new = ok & ~np.isfinite(best_eps)
            best_eps = np.where(new, e, best_eps)
            x_adv = np.where(new.reshape(expand), xa, x_adv)
    else:
        lo, hi = np.zeros(n), np.full(n, eps_max)
        ok, xa = probe(hi, 0)
        found = ok & ~already
        best_eps = np.where(found, eps_max, best_eps)
        x_adv = np.where(found.reshape(expand), xa, x_adv)
        for i in range(1, bisect_steps + 1):
            mid = (lo + hi) / 2
            ok, xa = probe(np.where(found, mid, 0.0), i)
            ok = ok & found
            hi, lo = np.where(ok, mid, hi), np.where(found & ~ok, mid, lo)
            best_eps = np.where(ok, mid, best_eps)
            x_adv = np.where(ok.reshape(expand), xa, x_adv)
    eps_arr = jnp.asarray(best_eps, b.x.dtype)
    return MinEpsResult(eps=eps_arr, found=jnp.isfinite(eps_arr), x_adv=jnp.asarray(x_adv), label_source=b.label_source)
