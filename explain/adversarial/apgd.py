"""Auto-PGD (APGD) and its targeted variant APGD-T, under L∞ and L2 (Croce & Hein 2020).

APGD is PGD without a step size to tune. From a random point on the ε-sphere
``x₀`` it steps with momentum,

    z_{t+1} = P(x_t + η_t·d(∇J(x_t)))
    x_{t+1} = P(x_t + 0.75·(z_{t+1} − x_t) + 0.25·(x_t − x_{t−1}))     (no momentum on the first step)

(``P`` clips into the input range and projects onto the ε-ball, ``d`` is the
norm's steepest direction), starting from ``η₀ = 2ε``. At checkpoints
``w_j`` (the first after 22% of the iterations, then at intervals shrinking by
3% of them down to 6%) each example halves ``η`` and restarts from its
best point so far when either

1. the objective rose on at most 75% of the steps since the last checkpoint, or
2. ``η`` was not halved at the last checkpoint and the best objective has not improved since.

APGD-T (``loss="dlr_targeted"``) runs this with the targeted DLR loss towards
each of the ``target_classes`` highest-scoring other classes at ``x`` in turn
(an untargeted attack with a targeted loss: success is leaving the label) and
keeps each example's worst case.

The state is per example and every decision is a ``jnp.where``, so a batch is
one compiled step; the host loop knows only the iteration count and the
checkpoints (a Python loop over compiled pieces, as :mod:`explain.adversarial.attacks`).
Cost: ``steps`` gradient passes and two forward passes (the clean point and the
last iterate are scored), the same as PGD-``steps``.

References:
  Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse
  parameter-free attacks. ICML 2020 (Algorithm 1, section 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from explain.adversarial import attacks as A
from explain.gradients import target_and_grad
from explain.targets import BoundTarget

MOMENTUM = 0.75
RHO = 0.75  # condition 1: the objective rose on at most this share of the steps


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class APGDState:
    """Per-example search state and the best adversarial kept (``A.PGDState`` fields).

    ``x_cur``/``x_prev``: the iterate and the one before (momentum); ``g``/``j``: ∇J and J at
    ``x_cur``; ``x_max``/``g_max``/``j_max``: the highest-J point (restarts go back to it);
    ``eta``: the step ``(N,)``; ``rises``: steps since the last checkpoint on which J rose;
    ``j_max_ckpt``/``halved``: ``j_max`` and whether ``eta`` was halved at the last checkpoint.
    """

    x_cur: jax.Array
    x_prev: jax.Array
    g: jax.Array
    j: jax.Array
    x_max: jax.Array
    g_max: jax.Array
    j_max: jax.Array
    eta: jax.Array
    rises: jax.Array
    j_max_ckpt: jax.Array
    halved: jax.Array
    kept: A.PGDState


def checkpoints(steps: int) -> list[int]:
    """The iterations (1-based counts of steps taken) after which the step size is reconsidered.

    ``p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``, times ``steps``
    (AutoAttack's integer schedule: first ``⌊0.22·steps⌋``, then shrinking by ``⌊0.03·steps⌋``
    down to ``⌊0.06·steps⌋``, each at least 1).
    """
    first, shrink, least = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, gap, at = [], first, first
    while at <= steps:
        out.append(at)
        gap = max(gap - shrink, least)
        at += gap
    return out


def sphere_start(
    key: jax.Array, row_ids: Int[Array, " n"], x: Float[Array, " n *features"], eps: Float[Array, " n"], norm: str
) -> Float[Array, " n *features"]:
    """A random point on each example's ε-sphere, example ``i`` from ``fold_in(key, row_ids[i])``.

    L∞: ``ε·t/‖t‖_∞`` with ``t ~ U[−1, 1]^d``; L2: ``ε·t/‖t‖₂`` with ``t ~ N(0, I)`` (AutoAttack's start).
    """

    def one(k):
        if norm == "linf":
            return jax.random.uniform(k, x.shape[1:], x.dtype, -1.0, 1.0)
        return jax.random.normal(k, x.shape[1:], x.dtype)

    t = A._per_row(key, row_ids, one)
    n = A.perturbation_norm(t, norm)
    return t / A._per_example(jnp.maximum(n, A._TINY), x) * A._per_example(eps, x)


def apgd_init(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    step_size: Float[Array, " n"],
    key: jax.Array | None,
    row_ids: Int[Array, " n"],
    config: A.AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> APGDState:
    """Scores the clean point, draws ``x₀`` on the ε-sphere (``x`` itself without ``random_start``) and takes ∇J(x₀).

    ``step_size`` is the first step ``η₀`` per example ``(N,)``.
    """
    kept = A.score_clean(apply, params, x, target, labels=labels, goal=goal)
    delta = sphere_start(key, row_ids, x, eps, config.norm) if config.random_start else jnp.zeros_like(x)
    x0 = A.constrain(x, x + delta, eps, config.norm, value_range)
    j0, g0, out0 = target_and_grad(apply, params, x0, target)
    return APGDState(
        x_cur=x0, x_prev=x0, g=g0, j=j0, x_max=x0, g_max=g0, j_max=j0,
        eta=step_size, rises=jnp.zeros_like(j0, jnp.int32), j_max_ckpt=j0,
        halved=jnp.ones_like(j0, bool), kept=A._keep_scored(kept, x0, out0, j0, labels, goal),
    )  # fmt: skip


def _propose(s: APGDState, x, eps, momentum, norm, value_range) -> jax.Array:
    """``P(x_t + m·(z − x_t) + (1 − m)·(x_t − x_{t−1}))`` with ``z = P(x_t + η·d(∇J(x_t)))``."""
    z = A.constrain(x, A._ascend(s.x_cur, s.g, s.eta, norm), eps, norm, value_range)
    moved = s.x_cur + momentum * (z - s.x_cur) + (1.0 - momentum) * (s.x_cur - s.x_prev)
    return A.constrain(x, moved, eps, norm, value_range)


def _advance(s: APGDState, x_next, j, g) -> APGDState:
    up = j > s.j_max
    return dataclasses.replace(
        s, x_prev=s.x_cur, x_cur=x_next, g=g, j=j, rises=s.rises + (j > s.j), j_max=jnp.where(up, j, s.j_max),
        x_max=A._where_rows(up, x_next, s.x_max), g_max=A._where_rows(up, g, s.g_max),
    )  # fmt: skip


def apgd_step(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    state: APGDState,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    momentum: Float[Array, " "],
    config: A.AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> tuple[APGDState, Float[Array, " n"]]:
    """One APGD iteration with a gradient at the new point; returns the state and ``J(x_{t+1})`` ``(N,)``."""
    x_next = _propose(state, x, eps, momentum, config.norm, value_range)
    j, g, out = target_and_grad(apply, params, x_next, target)
    kept = A._keep_scored(state.kept, x_next, out, j, labels, goal)
    return dataclasses.replace(_advance(state, x_next, j, g), kept=kept), j


def apgd_checkpoint(state: APGDState, interval: Int[Array, " "]) -> APGDState:
    """Halves ``η`` and goes back to the best point where condition 1 or 2 holds (see the module)."""
    cut = (state.rises <= RHO * interval) | (~state.halved & (state.j_max <= state.j_max_ckpt))
    return dataclasses.replace(
        state, eta=jnp.where(cut, state.eta / 2, state.eta), rises=jnp.zeros_like(state.rises), j_max_ckpt=state.j_max,
        halved=cut, x_cur=A._where_rows(cut, state.x_max, state.x_cur), g=A._where_rows(cut, state.g_max, state.g),
    )  # fmt: skip


def apgd_finish(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    state: APGDState,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    momentum: Float[Array, " "],
    config: A.AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> A.Adversarial:
    """The last iteration, scored with a forward pass only; returns the best point kept by (success, J)."""
    x_next = _propose(state, x, eps, momentum, config.norm, value_range)
    out, j, s = A._score(apply, params, x_next, target, labels, goal)
    return A.kept_result(A._keep(state.kept, x_next, out, j, s), j[:, None])


def _momentum(t: int, dtype) -> jax.Array:
    """The momentum of iteration ``t`` (1-based): none on the first step, :data:`MOMENTUM` after."""
    return jnp.asarray(1.0 if t == 1 else MOMENTUM, dtype)


def _iterate(
    pieces, apply, params, x, target, *, labels, goal, eps, key, row_ids, steps, step_size, config, value_range
) -> A.Adversarial:
    """``init``, ``steps − 1`` × ``step`` (``checkpoint`` at the marks) and ``finish``: one APGD run."""
    init, step, checkpoint, finish = pieces
    rows = dict(labels=labels, goal=goal)
    fixed = dict(eps=eps, config=config, value_range=value_range)
    state = init(apply, params, x, target, **rows, step_size=step_size, key=key, row_ids=row_ids, **fixed)
    trace = [state.j]
    marks, last = set(checkpoints(steps)), 0
    for t in range(1, steps):
        state, j = step(apply, params, x, target, state, **rows, momentum=_momentum(t, x.dtype), **fixed)
        trace.append(j)
        if t in marks:
            state, last = checkpoint(state, jnp.asarray(t - last, jnp.int32)), t
    res = finish(apply, params, x, target, state, **rows, momentum=_momentum(steps, x.dtype), **fixed)
    return A._with_steps(res, trace)


def apgd_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: float | Float[Array, " "] | Float[Array, " n"],
    config: A.AttackConfig,
    value_range: tuple[float, float] | None = None,
    key: jax.Array | None = None,
    row_ids: Int[Array, " n"] | None = None,
) -> A.Adversarial:
    """APGD (one restart) as a pure function: traced, the iterations unroll; :func:`apgd_loop` loops over compiled ones.

    Args:
      x: ``(N, ...)`` clean inputs; target: the objective J ascended (e.g. :func:`~explain.adversarial.attacks.objective`);
      labels / goal: ``(N,)`` classes for the success test (exactly one); eps: scalar or ``(N,)``;
      config: ``kind="apgd"``, its ``steps`` (≥ 1 gradient passes), ``norm``, ``rel_step_size`` (first step / ε);
      key: the random start's key, row ``i`` drawing from ``fold_in(key, row_ids[i])``.

    Returns:
      :class:`~explain.adversarial.attacks.Adversarial` with ``trace`` ``(N, steps + 1)``: J at ``x₀ … x_steps``.
    """
    eps = A._rows_eps(eps, x)
    row_ids = A._row_ids(row_ids, x)
    return _iterate(
        (apgd_init, apgd_step, apgd_checkpoint, apgd_finish), apply, params, x, target, labels=labels, goal=goal,
        eps=eps, key=key, row_ids=row_ids, steps=config.steps, step_size=config.alpha * eps, config=config,
        value_range=value_range,
    )  # fmt: skip


_COMPILED = (
    jax.jit(apgd_init, **A._STEP_STATIC),
    jax.jit(apgd_step, **A._STEP_STATIC),
    jax.jit(apgd_checkpoint),
    jax.jit(apgd_finish, **A._STEP_STATIC),
)
_top_classes = jax.jit(lambda apply, params, x: jnp.argsort(-apply(params, x), axis=1), static_argnums=0)


def apgd_loop(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    config: A.AttackConfig,
    value_range: tuple[float, float] | None = None,
    key: jax.Array | None = None,
    row_ids: Int[Array, " n"] | None = None,
) -> A.Adversarial:
    """APGD with ``config.restarts`` restarts (keys ``fold_in(key, r)``), worst case kept by (success, J).

    The same result as :func:`apgd_core` per restart, looping in Python over compiled pieces
    that depend only on the norm and the start (one compile whatever the steps). With
    ``config.loss == "dlr_targeted"`` (APGD-T) ``target`` is ignored: each of the top
    ``config.target_classes`` other classes at ``x`` is attacked in turn with the targeted
    DLR loss (keys ``fold_in(fold_in(key, rank), r)``); ``labels`` are required.
    """
    x, eps, labels, goal = A._on_device(x, eps, labels, goal)
    row_ids = A._row_ids(row_ids, x)
    static = A.step_config(dataclasses.replace(config, loss="ce", target_classes=1))
    runs: list[tuple[BoundTarget, jax.Array | None]] = [(target, key)]
    if config.loss == "dlr_targeted":
        order = _top_classes(apply, params, x)
        ranks = range(1, min(config.target_classes, order.shape[1] - 1) + 1)
        runs = [(A.targeted_dlr_objective(labels, order[:, r]), _fold(key, r)) for r in ranks]
    return A._worst_case(
        _iterate(
            _COMPILED, apply, params, x, tgt, labels=labels, goal=goal, eps=eps, key=_fold(k0, r),
            row_ids=row_ids, steps=config.steps, step_size=config.alpha * eps, config=static,
            value_range=value_range,
        )
        for tgt, k0 in runs
        for r in range(config.restarts if config.random_start else 1)
    )  # fmt: skip


def _fold(key: jax.Array | None, i: int) -> jax.Array | None:
    return None if key is None else jax.random.fold_in(key, i)
