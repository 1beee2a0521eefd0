"""The smallest ε that flips each prediction: on a grid, or by bisection.

Each probe is one batched attack with a per-example ε ``(N,)``, so all
examples are searched together and every probe reuses one compiled function.
Bisection assumes success is monotone in ε, which holds for the attack's
reach (a larger ball contains the smaller) but not always for a finite-step
attack; the answer is an upper bound on the true minimal ε either way, and
the returned adversarial is a verified one at that ε.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from explain.adversarial import attacks as A
from explain.adversarial.sweep import LabelSource, attack_batch, check_eps, resolve_labels
from explain.model import Model

Search = Literal["bisect", "grid"]
PGD10 = A.AttackConfig("pgd", steps=10)


class MinEpsResult(NamedTuple):
    """``eps``: ``(N,)`` smallest ε found (``inf`` where none flips); ``found``: ``(N,)`` bool;
    ``x_adv``: ``(N, ...)`` the adversarial at that ε (``x`` where none); ``label_source`` as in sweeps."""

    eps: jax.Array
    found: jax.Array
    x_adv: jax.Array
    label_source: LabelSource


def min_eps(
    model: Model | Any,
    x: Any,
    *,
    eps_max: float | None = None,
    grid: Sequence[float] | None = None,
    search: Search | None = None,
    bisect_steps: int = 8,
    config: A.AttackConfig = PGD10,
    key: Any = None,
    labels: Any = None,
    targets: Any = None,
    batch_size: int | None = None,
) -> MinEpsResult:
    """Per example, the smallest ε at which ``config``'s attack succeeds.

    ``search`` defaults to ``"grid"`` when ``grid`` is given, else ``"bisect"``.
    ``search="grid"``: the first ε of the sorted ``grid`` that succeeds.
    ``search="bisect"``: checks ``eps_max``, then halves ``[lo, hi]`` per example
    ``bisect_steps`` times; the answer is within ``eps_max / 2**bisect_steps``.
    Examples already misclassified (untargeted, ``labels=`` given) get ε = 0.

    Args:
      x: ``(N, *input_spec.shape)``; config, key, labels, targets: as :func:`~explain.adversarial.sweep.sweep`.

    Raises:
      ValueError: unknown ``search``, missing ``eps_max``/``grid``, ε < 0, and the sweep's errors.
    """
    search = search or ("grid" if grid is not None else "bisect")
    if search not in ("bisect", "grid"):
        raise ValueError(f"unknown search {search!r}; expected 'bisect' or 'grid'")
    if search == "grid":
        if grid is None:
            raise ValueError("search='grid' needs grid=[eps, ...]")
        probes = sorted(check_eps(grid))
    else:
        if eps_max is None:
            raise ValueError("search='bisect' needs eps_max=")
        (eps_max,) = check_eps(eps_max)
        if not isinstance(bisect_steps, int) or bisect_steps < 1:
            raise ValueError(f"expected bisect_steps >= 1, got {bisect_steps!r}")
    if config.kind == "pgd" and config.random_start and key is None:
        raise ValueError("a randomised attack (random_start=True) needs an explicit key=jax.random.key(...)")
    model, x, loss_fn, lab, logits, source, targeted, batch = resolve_labels(
        model, x, labels=labels, targets=targets, batch_size=batch_size
    )
    n = x.shape[0]
    key = jax.random.key(0) if key is None else key

    def probe(eps_vec, i):
        res = attack_batch(
            model, x, loss_fn, lab, jnp.asarray(eps_vec, x.dtype),
            config=config, targeted=targeted, key=jax.random.fold_in(key, i), batch=batch,
        )  # fmt: skip
        return np.asarray(A.is_success(res.outputs, lab, targeted)), res.x_adv

    already = np.asarray(A.is_success(logits, lab, targeted))
    best_eps = np.where(already, 0.0, np.inf)
    x_adv = x
    if search == "grid":
        for i, e in enumerate(probes):
            if e == 0.0:
                continue
            ok, xa = probe(np.full(n, e), i)
            new = ok & ~np.isfinite(best_eps)
            best_eps = np.where(new, e, best_eps)
            x_adv = jnp.where(jnp.asarray(new).reshape((-1,) + (1,) * (x.ndim - 1)), xa, x_adv)
    else:
        lo, hi = np.zeros(n), np.full(n, eps_max)
        ok, xa = probe(hi, 0)
        found = ok & ~already
        best_eps = np.where(found, eps_max, best_eps)
        x_adv = jnp.where(jnp.asarray(found).reshape((-1,) + (1,) * (x.ndim - 1)), xa, x_adv)
        for i in range(1, bisect_steps + 1):
            mid = (lo + hi) / 2
            ok, xa = probe(np.where(found, mid, 0.0), i)
            ok = ok & found
            hi, lo = np.where(ok, mid, hi), np.where(found & ~ok, mid, lo)
            best_eps = np.where(ok, mid, best_eps)
            x_adv = jnp.where(jnp.asarray(ok).reshape((-1,) + (1,) * (x.ndim - 1)), xa, x_adv)
    eps_arr = jnp.asarray(best_eps, x.dtype)
    return MinEpsResult(eps=eps_arr, found=jnp.isfinite(eps_arr), x_adv=x_adv, label_source=source)
