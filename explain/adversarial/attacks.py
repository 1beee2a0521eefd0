"""Gradient attacks: FGSM, BIM and PGD under L∞ and L2, as pure cores over arrays.

Every attack ascends an objective ``J``, a :class:`~explain.targets.BoundTarget`
(the word ``target`` of :mod:`explain.targets`: what is differentiated). By
default it is built from the cross-entropy ``L`` (:func:`explain.targets.cross_entropy`,
exact in float32): ``J = L(x, labels)`` untargeted (move away from the
``labels``), ``J = −L(x, goal)`` targeted (move towards the class ``goal``).
One step is the steepest ascent direction of ``J`` for the attack's norm,
scaled by a step ``α``:

* L∞: ``x ← x + α·sign(∇J)`` (Goodfellow et al. 2015);
* L2: ``x ← x + α·∇J / ‖∇J‖₂``, the norm taken per example over all of its
  input axes (not over the batch, and never a zero division: a zero gradient
  makes a zero step).

After each step the perturbation ``δ = x' − x`` is clipped into the model's
input range (``model.input_spec.value_range``; ``None`` means no clipping)
and then projected onto the ε-ball. With ``x`` in range, this order keeps
both constraints, since the ε-ball projection only shrinks ``δ`` towards 0.

The gradient comes only from :func:`explain.gradients.target_and_grad`. The
cores (:func:`fgsm_core`, :func:`pgd_core`, :func:`perturb`) are pure over
arrays, so they run inside any ``jax.jit`` (a training step included); the
module-level compiled pieces (``_fgsm``, ``_pgd_init``, ``_pgd_step``,
``_pgd_finish``, ``_merge``) are what :mod:`explain.adversarial.sweep` runs
chunk by chunk, a Python loop over one compiled step (faster than
``lax.fori_loop`` on XLA CPU, and the number of steps never recompiles).

References:
  Goodfellow, Shlens, Szegedy (2015), Explaining and harnessing adversarial examples.
  Kurakin, Goodfellow, Bengio (2017), Adversarial examples in the physical world (BIM).
  Madry et al. (2018), Towards deep learning models resistant to adversarial attacks (PGD).
  Wong, Rice, Kolter (2020), Fast is better than free (FGSM with random start).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from explain import targets as targets_lib
from explain.checks import check_choice, check_float, check_int
from explain.gradients import target_and_grad
from explain.results import Result
from explain.targets import BoundTarget, cross_entropy

Norm = Literal["linf", "l2"]
AttackKind = Literal["fgsm", "pgd", "apgd", "square"]
NORMS: tuple[str, ...] = ("linf", "l2")
KINDS: tuple[str, ...] = ("fgsm", "pgd", "apgd", "square")
_TINY = 1e-12
Host = Array | np.ndarray  # a result's array leaf: a JAX array, or a NumPy one after Result.to_numpy()


# ----------------------------------------------------------------------------- geometry


def _per_example(v: jax.Array, like: jax.Array) -> jax.Array:
    """``(N,)`` -> ``(N, 1, ..., 1)`` broadcastable against ``like``."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def _where_rows(mask: Bool[Array, " n"], a: jax.Array, b: jax.Array) -> jax.Array:
    """Row ``i`` of ``a`` where ``mask[i]``, else row ``i`` of ``b`` (``a``, ``b``: ``(N, ...)``)."""
    return jnp.where(_per_example(mask, a), a, b)


def _per_row(key: jax.Array, row_ids: Int[Array, " n"], draw: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``draw(fold_in(key, row_ids[i]))`` stacked over rows: one stream per row id, so chunking never changes a draw."""
    return jax.vmap(lambda i: draw(jax.random.fold_in(key, i)))(row_ids)


def _row_ids(row_ids: Int[ArrayLike, " n"] | None, x: jax.Array) -> Int[Array, " n"]:
    """The rows' ids ``(N,)``, by default ``0..N-1``."""
    return jnp.arange(x.shape[0]) if row_ids is None else jnp.asarray(row_ids)


def _on_device(*arrays: ArrayLike | None) -> tuple[jax.Array | None, ...]:
    """Each array on the device once, not once per step (``None`` stays ``None``)."""
    return tuple(None if a is None else jnp.asarray(a) for a in arrays)


def perturbation_norm(delta: Float[Array, " n *features"], norm: Norm) -> Float[Array, " n"]:
    """‖δ_i‖ per example over all non-batch axes: ``(N, ...) -> (N,)``."""
    flat = delta.reshape(delta.shape[0], -1)
    return jnp.max(jnp.abs(flat), axis=1) if norm == "linf" else jnp.sqrt(jnp.sum(flat * flat, axis=1))


def steepest_direction(g: Float[Array, " n *features"], norm: Norm) -> Float[Array, " n *features"]:
    """The unit-norm step maximising ``⟨g, d⟩``: ``sign(g)`` (L∞) or ``g/‖g‖₂`` per example (L2)."""
    if norm == "linf":
        return jnp.sign(g)
    # Rescale by the largest entry first: squares of tiny gradients (saturated
    # softmax) underflow in float32, and a zero gradient must give a zero step.
    m = _per_example(perturbation_norm(g, "linf"), g)
    g = jnp.where(m > 0, g / jnp.where(m > 0, m, 1.0), 0.0)
    return g / _per_example(jnp.maximum(perturbation_norm(g, "l2"), _TINY), g)


def project(delta: Float[Array, " n *features"], eps: Float[Array, " n"], norm: Norm) -> Float[Array, " n *features"]:
    """Euclidean projection of each ``δ_i`` onto ``{‖δ‖ ≤ ε_i}``; ``eps`` is ``(N,)``."""
    e = _per_example(eps, delta)
    if norm == "linf":
        return jnp.clip(delta, -e, e)
    n = _per_example(perturbation_norm(delta, "l2"), delta)
    return delta * jnp.minimum(1.0, e / jnp.maximum(n, _TINY))


def _ascend(xi: jax.Array, g: jax.Array, step: jax.Array, norm: Norm) -> jax.Array:
    """``x_t + α·d(g)`` ``(N, ...)``: a step ``α`` ``(N,)`` along the steepest direction of ``g``, unconstrained."""
    return xi + _per_example(step, xi) * steepest_direction(g, norm)


def delta_norm(x_adv: Float[Array, " n *features"], x: Float[Array, " n *features"], norm: Norm) -> Float[Array, " n"]:
    """‖x_adv − x‖ per example: ``(N,)``."""
    return perturbation_norm(x_adv - x, norm)


def clip_to_range(x: jax.Array, value_range: tuple[float, float] | None) -> jax.Array:
    """Clips into the declared input range; ``None`` (no declared range) leaves ``x`` as is."""
    return x if value_range is None else jnp.clip(x, value_range[0], value_range[1])


def constrain(
    x: Float[Array, " n *features"],
    x_new: Float[Array, " n *features"],
    eps: Float[Array, " n"],
    norm: Norm,
    value_range: tuple[float, float] | None,
) -> Float[Array, " n *features"]:
    """``x + Π_ε(clip(x_new) − x)``: inside the input range and the ε-ball around ``x``."""
    return x + project(clip_to_range(x_new, value_range) - x, eps, norm)


def random_start(
    key: jax.Array, row_ids: Int[Array, " n"], x: Float[Array, " n *features"], eps: Float[Array, " n"], norm: Norm
) -> Float[Array, " n *features"]:
    """A uniform draw from each example's ε-ball, example ``i`` from ``fold_in(key, row_ids[i])``.

    One stream per row id, so chunking never changes the draw. L∞: ``U[−ε, ε]``
    per coordinate. L2: a uniform point of the d-ball, direction ``z/‖z‖`` with
    ``z ~ N(0, I)`` and radius ``ε·u^{1/d}``.
    """
    shape = x.shape[1:]

    def one(k):
        if norm == "linf":
            return jax.random.uniform(k, shape, x.dtype, -1.0, 1.0)
        kz, ku = jax.random.split(k)
        z = jax.random.normal(kz, shape, x.dtype)
        r = jax.random.uniform(ku, (), x.dtype) ** (1.0 / z.size)
        return z / jnp.maximum(jnp.linalg.norm(z.ravel()), _TINY) * r

    return _per_row(key, row_ids, one) * _per_example(eps, x)


def is_success(
    outputs: Float[Array, " n k"], *, labels: Int[Array, " n"] | None = None, goal: Int[Array, " n"] | None = None
) -> Bool[Array, " n"]:
    """Untargeted: the prediction left ``labels``; targeted: it reached ``goal``. ``(N,)`` bool."""
    _check_one_of(labels, goal)
    pred = jnp.argmax(outputs, axis=1)
    return pred != labels if goal is None else pred == goal


def _score(apply: Callable, params: Any, x: jax.Array, target: BoundTarget, labels: Any, goal: Any) -> tuple:
    """One forward pass at ``x`` ``(N, ...)``: the logits ``(N, K)``, J ``(N,)`` and success ``(N,)``."""
    out = apply(params, x)
    return out, target(out), is_success(out, labels=labels, goal=goal)


# ----------------------------------------------------------------------------- objective


def toward(outputs: jax.Array, goal: jax.Array) -> jax.Array:
    """The targeted objective ``−L(outputs, goal)``: ascending it moves towards class ``goal``."""
    return -cross_entropy(outputs, goal)


def _toward_cw(outputs: jax.Array, goal: jax.Array) -> jax.Array:
    return -targets_lib.cw_margin(outputs, goal)


def _toward_dlr(outputs: jax.Array, goal: jax.Array) -> jax.Array:
    return -targets_lib.dlr(outputs, goal)


# loss kind -> (untargeted J(outputs, labels), targeted J(outputs, goal))
_OBJECTIVES = {
    "ce": (cross_entropy, toward),
    "cw": (targets_lib.cw_margin, _toward_cw),
    "dlr": (targets_lib.dlr, _toward_dlr),
}
LOSSES: tuple[str, ...] = (*_OBJECTIVES, "dlr_targeted")


def _check_one_of(labels: Any, goal: Any) -> None:
    if (labels is None) == (goal is None):
        raise ValueError(
            "give labels= (untargeted attack, away from them) or goal= (targeted attack, towards it), exactly one"
        )


def objective(
    *, labels: Int[Array, " n"] | None = None, goal: Int[Array, " n"] | None = None, loss: str = "ce"
) -> BoundTarget:
    """The attack objective J (pure: traced arrays welcome).

    Untargeted, J is the loss against ``labels``: cross-entropy ``"ce"``, the CW margin ``"cw"``
    or DLR ``"dlr"``; targeted, its negative against ``goal`` (ascending it moves towards ``goal``).
    Targeted DLR (``"dlr_targeted"``) needs both labels and a goal per row and is bound by
    :func:`targeted_dlr_objective`.
    """
    check_choice("loss", loss, tuple(_OBJECTIVES))
    _check_one_of(labels, goal)
    away, towards = _OBJECTIVES[loss]
    if goal is None:
        return BoundTarget(away, labels, f"loss[{loss}]")
    return BoundTarget(towards, goal, f"-loss[{loss}] towards goal")


def targeted_dlr_objective(labels: Int[Array, " n"], goal: Int[Array, " n"]) -> BoundTarget:
    """J = targeted DLR (:func:`explain.targets.dlr_targeted`) pulling ``goal`` above ``labels``."""
    return BoundTarget(targets_lib.dlr_targeted, jnp.stack([labels, goal], axis=1), "loss[dlr_targeted]")


# ----------------------------------------------------------------------------- configuration and results


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Static attack settings (hashable: they key compilation).

    Attributes:
      kind: ``"fgsm"`` (one step of size ε from ``x``), ``"pgd"`` (iterated, projected),
        ``"apgd"`` (:mod:`explain.adversarial.apgd`, step size adapted) or ``"square"``
        (:mod:`explain.adversarial.square`, score-based: no gradients).
      norm: ``"linf"`` or ``"l2"``.
      steps: gradient steps (PGD/BIM/APGD); queries per example for Square.
      rel_step_size: step ``α = rel_step_size·ε``; ``None`` means Madry et al.'s
        ``2.5/steps`` (PGD and BIM alike), ``1.25`` for FGSM-RS (Wong et al.); APGD's
        first step, default ``2`` (Croce & Hein), then halved at checkpoints.
      random_start: start from a uniform point of the ε-ball (PGD) instead of ``x`` (BIM).
      restarts: independent random starts; the worst case per example is kept.
      keep_best: return the best iterate per example, ranked by (success, J)
        among iterates whose J is at least the clean J; ``False`` returns the
        last iterate (what adversarial training uses: ``steps`` gradients, no
        extra forward passes).
      loss: the objective J when no ``target=`` is given: ``"ce"``, ``"cw"``, ``"dlr"``
        (see :func:`objective`) or ``"dlr_targeted"`` (APGD-T: targeted DLR towards each of
        the ``target_classes`` highest-scoring other classes at ``x`` in turn; untargeted
        success). Square defaults to the CW margin, as in its paper.
      target_classes: how many of the top classes APGD-T tries (AutoAttack: 9).
      p_init: Square's initial fraction of the image a square covers (0.8 for L∞, AutoAttack).
    """

    # plain str (not the Literal aliases): a bad value gets the check's message, not a type-check error
    kind: str = "pgd"
    norm: str = "linf"
    steps: int = 10
    rel_step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    keep_best: bool = True
    loss: str = "ce"
    target_classes: int = 9
    p_init: float = 0.8

    def __post_init__(self):
        check_choice("attack kind", self.kind, KINDS)
        check_choice("norm", self.norm, NORMS)
        check_choice("loss", self.loss, LOSSES)
        check_int("steps", self.steps)
        check_int("restarts", self.restarts)
        check_int("target_classes", self.target_classes)
        if self.loss == "dlr_targeted" and self.kind != "apgd":
            raise ValueError("loss 'dlr_targeted' (APGD-T) needs kind='apgd'")
        if not 0 < self.p_init <= 1:
            raise ValueError(f"expected 0 < p_init <= 1 (Square's initial square fraction), got {self.p_init!r}")
        if self.rel_step_size is not None:
            check_float("rel_step_size (the step as a fraction of eps)", self.rel_step_size, minimum=0.0)
            if not self.rel_step_size > 0:
                raise ValueError(
                    f"expected rel_step_size > 0 (the step as a fraction of eps), got {self.rel_step_size!r}"
                )

    @property
    def alpha(self) -> float:
        """The step as a fraction of ε (APGD: the first step)."""
        if self.rel_step_size is not None:
            return float(self.rel_step_size)
        return 2.0 if self.kind == "apgd" else 2.5 / self.steps

    @property
    def randomised(self) -> bool:
        """The attack draws random numbers (and so needs a key)."""
        return self.kind == "square" or (self.kind in ("pgd", "apgd") and self.random_start)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Adversarial(Result):
    """What a pure attack returns for one batch of ``N`` examples.

    Attributes:
      raw: the attack's point before clipping into the input range (FGSM's
        ``x + ε·d(∇J)``; iterative attacks stay in range, so ``raw`` is ``x_adv``).
      x_adv: inside the input range and the ε-ball.
      trace: J per example and iterate ``(N, T)``.
      outputs, objective, success: logits ``(N, K)``, J ``(N,)`` and success ``(N,)`` at
        ``x_adv`` (``None`` from a PGD with ``keep_best=False``, which scores nothing).
      outputs_clean: the outputs at ``x`` ``(N, K)`` (``None`` likewise).
    """

    raw: Float[Host, " n *features"]
    x_adv: Float[Host, " n *features"]
    trace: Float[Host, " n t"]
    outputs: Float[Host, " n k"] | None = None
    objective: Float[Host, " n"] | None = None
    success: Bool[Host, " n"] | None = None
    outputs_clean: Float[Host, " n k"] | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PGDState:
    """The iterate ``x_t`` and the best point so far with its logits, J and success; ``clean_*`` at ``x``."""

    xi: jax.Array
    best_x: jax.Array | None = None
    best_out: jax.Array | None = None
    best_j: jax.Array | None = None
    best_s: jax.Array | None = None
    clean_out: jax.Array | None = None
    clean_j: jax.Array | None = None


def _rows_eps(eps: Any, x: jax.Array) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(eps, x.dtype), (x.shape[0],))


def _bind(target: BoundTarget | None, labels: Any, goal: Any) -> BoundTarget:
    _check_one_of(labels, goal)
    return objective(labels=labels, goal=goal) if target is None else target


# ----------------------------------------------------------------------------- FGSM


def fgsm_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget | None = None,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: float | Float[Array, " "] | Float[Array, " n"],
    norm: Norm = "linf",
    value_range: tuple[float, float] | None = None,
) -> Adversarial:
    """Pure FGSM / FGM: ``x_adv = clip(x + ε·d(∇J(x)))`` with one gradient and one forward pass.

    ``d`` is :func:`steepest_direction`. In range, the perturbation is exactly
    ``ε·sign(∇J)`` (L∞); clipping only shrinks it.

    Args:
      apply: ``apply(params, x) -> logits (N, K)``.
      x: ``(N, ...)`` clean inputs.
      target: the objective J ascended (default :func:`objective` of ``labels`` / ``goal``).
      labels: ``(N,)`` classes to move away from (untargeted), or
      goal: ``(N,)`` classes to move towards (targeted); exactly one.
      eps: the budget, a scalar or ``(N,)``.
      value_range: the input range clipped to, ``None`` for none.
    """
    target = _bind(target, labels, goal)
    eps = _rows_eps(eps, x)
    j0, g, out0 = target_and_grad(apply, params, x, target)
    raw = _ascend(x, g, eps, norm)
    x_adv = constrain(x, raw, eps, norm, value_range)  # clipping an out-of-range x could leave the ball
    out, j, s = _score(apply, params, x_adv, target, labels, goal)
    return Adversarial(
        raw=raw, x_adv=x_adv, trace=jnp.stack([j0, j], axis=1), outputs=out, objective=j, success=s, outputs_clean=out0
    )


# ----------------------------------------------------------------------------- PGD


def _ranks_higher(s_new, j_new, s_old, j_old) -> Bool[Array, " n"]:
    """Lexicographic (success, J) per example: a new success wins, else the higher J among equals."""
    return (s_new & ~s_old) | ((s_new == s_old) & (j_new > j_old))


def _keep(state: PGDState, xi, out, j, s) -> PGDState:
    """Keeps ``xi`` per example where it ranks higher by (success, J) and its J is at least the clean J."""
    take = _ranks_higher(s, j, state.best_s, state.best_j) & (j >= state.clean_j)
    return dataclasses.replace(
        state,
        best_x=_where_rows(take, xi, state.best_x),
        best_out=jnp.where(take[:, None], out, state.best_out),
        best_j=jnp.where(take, j, state.best_j),
        best_s=jnp.where(take, s, state.best_s),
    )


def _keep_scored(state: PGDState, xi, out, j, labels, goal) -> PGDState:
    """:func:`_keep` with the success of ``out``."""
    return _keep(state, xi, out, j, is_success(out, labels=labels, goal=goal))


def pgd_init(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    key: jax.Array | None = None,
    row_ids: Int[Array, " n"] | None = None,
    config: AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> PGDState:
    """``x₀ = x + Π_ε(clip(x + δ₀) − x)`` with ``δ₀ ~ U(ε-ball)`` (or 0); scores the clean point when ``keep_best``."""
    if config.random_start:
        if key is None:
            raise ValueError("a randomised attack (random_start=True) needs an explicit key=jax.random.key(...)")
        delta = random_start(key, _row_ids(row_ids, x), x, eps, config.norm)
    else:
        delta = jnp.zeros_like(x)
    x0 = constrain(x, x + delta, eps, config.norm, value_range)
    if not config.keep_best:  # nothing is compared, so no extra forward pass
        return PGDState(xi=x0)
    return dataclasses.replace(score_clean(apply, params, x, target, labels=labels, goal=goal), xi=x0)


def score_clean(apply: Callable, params: Any, x: jax.Array, target: BoundTarget, *, labels=None, goal=None) -> PGDState:
    """One forward pass at ``x``: the clean point is the first best point kept, and its J the floor."""
    out, j, s = _score(apply, params, x, target, labels, goal)
    return PGDState(xi=x, best_x=x, best_out=out, best_j=j, best_s=s, clean_out=out, clean_j=j)


def kept_result(state: PGDState, trace: jax.Array) -> Adversarial:
    """The best point kept by (success, J), with its outputs, J and success, as an :class:`Adversarial`."""
    return Adversarial(
        raw=state.best_x,
        x_adv=state.best_x,
        trace=trace,
        outputs=state.best_out,
        objective=state.best_j,
        success=state.best_s,
        outputs_clean=state.clean_out,
    )


def pgd_step(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    state: PGDState,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    step_size: Float[Array, " n"],
    config: AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> tuple[PGDState, Float[Array, " n"]]:
    """One step: ``x_{t+1} = x + Π_ε(clip(x_t + α·d(∇J(x_t))) − x)``; returns ``(state, J(x_t) (N,))``.

    ``step_size`` is ``α`` per example ``(N,)`` (traced, so neither ε nor the number of steps recompiles).
    """
    j, g, out = target_and_grad(apply, params, state.xi, target)
    if config.keep_best:
        state = _keep_scored(state, state.xi, out, j, labels, goal)
    x_next = constrain(x, _ascend(state.xi, g, step_size, config.norm), eps, config.norm, value_range)
    return dataclasses.replace(state, xi=x_next), j


def pgd_finish(
    apply: Callable,
    params: Any,
    target: BoundTarget,
    state: PGDState,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    config: AttackConfig,
) -> Adversarial:
    """Scores the last iterate (one forward pass) and returns the best point kept (the last one without ``keep_best``).

    ``trace`` is J at the last iterate ``(N, 1)`` (``(N, 0)`` without ``keep_best``): the
    caller prepends the J of every step, so the number of steps never recompiles this.
    """
    if not config.keep_best:
        return Adversarial(raw=state.xi, x_adv=state.xi, trace=jnp.zeros((state.xi.shape[0], 0), state.xi.dtype))
    out, j, s = _score(apply, params, state.xi, target, labels, goal)
    return kept_result(_keep(state, state.xi, out, j, s), j[:, None])


def _with_steps(res: Adversarial, steps: list) -> Adversarial:
    """Prepends J of every step (each ``(N,)``) to the trace of a finish: ``(N, steps [+ 1])``."""
    return dataclasses.replace(res, trace=jnp.concatenate([jnp.stack(steps, axis=1), res.trace], axis=1))


def step_config(config: AttackConfig) -> AttackConfig:
    """What the compiled pieces depend on (kind, norm, random start, keep_best): one compile whatever the steps."""
    return dataclasses.replace(config, steps=1, rel_step_size=None, restarts=1)


def _pgd_run(
    pieces, apply, params, x, target, *, labels, goal, eps, key, row_ids, steps, step_size, config, value_range
) -> Adversarial:
    """``init``, ``steps`` × ``step`` (J of each traced), ``finish``: one PGD run, traced or over compiled pieces."""
    init, step, finish = pieces
    rows = dict(labels=labels, goal=goal)
    fixed = dict(eps=eps, config=config, value_range=value_range)
    state = init(apply, params, x, target, **rows, key=key, row_ids=row_ids, **fixed)
    trace = []
    for _ in range(steps):
        state, j = step(apply, params, x, target, state, **rows, step_size=step_size, **fixed)
        trace.append(j)
    return _with_steps(finish(apply, params, target, state, **rows, config=config), trace)


def pgd_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget | None = None,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: float | Float[Array, " "] | Float[Array, " n"],
    config: AttackConfig,
    value_range: tuple[float, float] | None = None,
    key: jax.Array | None = None,
    row_ids: Int[Array, " n"] | None = None,
) -> Adversarial:
    """Pure PGD (Madry et al. 2018), BIM with ``random_start=False``, FGSM-RS with one step.

    ``δ₀ ~ U(ε-ball)`` (or 0), then ``steps`` times
    ``x_{t+1} = x + Π_ε(clip(x_t + α·d(∇J(x_t))) − x)`` with ``α = config.alpha·ε``.
    The steps are unrolled when traced (``steps`` is small in training); the
    public attacks instead loop in Python over one compiled :func:`pgd_step`.
    Restarts are the caller's loop (each with its own key): ``config.restarts`` is ignored here.

    Cost: ``steps`` gradient passes, plus two forward passes when
    ``keep_best`` (the clean point and the last iterate are scored too).

    Args:
      x: ``(N, ...)`` clean inputs; target, labels, goal, eps, value_range: as :func:`fgsm_core`.
      key: PRNG key of the random start (required when ``config.random_start``);
        row ``i`` draws from ``fold_in(key, row_ids[i])`` (default ``row_ids = arange(N)``).
        Restart ``r`` of the public :func:`~explain.adversarial.pgd` is this core with ``key=fold_in(key, r)``.
    """
    target = _bind(target, labels, goal)
    eps = _rows_eps(eps, x)
    return _pgd_run(
        (pgd_init, pgd_step, pgd_finish), apply, params, x, target, labels=labels, goal=goal, eps=eps, key=key,
        row_ids=row_ids, steps=config.steps, step_size=config.alpha * eps, config=config, value_range=value_range,
    )  # fmt: skip


def perturb(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    labels: Int[Array, " n"],
    key: jax.Array,
    *,
    eps: float,
    config: AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> Float[Array, " n *features"]:
    """Pure: an untargeted adversarial ``x_adv`` for a jitted training step (``stop_gradient`` applied).

    The last iterate (``keep_best`` is ignored: training wants the attack's point, at
    exactly ``steps`` gradient passes, no extra forward pass). FGSM-RS is
    ``AttackConfig("pgd", steps=1, rel_step_size=1.25, random_start=True)``. For
    :func:`models.train.train`: ``functools.partial(perturb, apply, eps=..., config=..., value_range=...)``.
    """
    eps = check_float("eps", eps)
    if config.kind == "fgsm":
        res = fgsm_core(apply, params, x, labels=labels, eps=eps, norm=config.norm, value_range=value_range)
    else:
        cfg = dataclasses.replace(config, keep_best=False, restarts=1)
        res = pgd_core(apply, params, x, labels=labels, eps=eps, config=cfg, value_range=value_range, key=key)
    return jax.lax.stop_gradient(res.x_adv)


def merge_restarts(a: Adversarial, b: Adversarial) -> Adversarial:
    """Per example, the better of two scored restarts by (success, J)."""
    take = _ranks_higher(b.success, b.objective, a.success, a.objective)
    return jax.tree_util.tree_map(lambda u, v: _where_rows(take, v, u), a, b)


# Compiled once per static (apply, settings): jax.jit keeps its own cache per static argument.
_fgsm = jax.jit(fgsm_core, static_argnums=0, static_argnames=("norm", "value_range"))
_STEP_STATIC = dict(static_argnums=0, static_argnames=("config", "value_range"))  # of every attack's compiled steps
_pgd_init = jax.jit(pgd_init, **_STEP_STATIC)
_pgd_step = jax.jit(pgd_step, **_STEP_STATIC)
_pgd_finish = jax.jit(pgd_finish, static_argnums=0, static_argnames=("config",))
_merge = jax.jit(merge_restarts)
_delta_norm = jax.jit(delta_norm, static_argnames=("norm",))


def _worst_case(runs: Iterable[Adversarial]) -> Adversarial:
    """Per example, the best of scored runs (restarts, goal classes) by (success, J), merged as they come."""
    return functools.reduce(_merge, runs)


def pgd_loop(
    apply: Callable,
    params: Any,
    x: Float[ArrayLike, " n *features"],
    target: BoundTarget,
    *,
    labels: Int[ArrayLike, " n"] | None = None,
    goal: Int[ArrayLike, " n"] | None = None,
    eps: Float[ArrayLike, " n"],
    config: AttackConfig,
    value_range: tuple[float, float] | None = None,
    key: jax.Array | None = None,
    row_ids: Int[ArrayLike, " n"] | None = None,
) -> Adversarial:
    """:func:`pgd_core` as a Python loop over the compiled init / step / finish (same result, one compile per step shape).

    ``config.restarts`` random starts (keys ``fold_in(key, r)``) are merged by (success, J).
    """
    x, eps, labels, goal, row_ids = _on_device(x, eps, labels, goal, row_ids)
    one, alpha = step_config(config), config.alpha * eps
    # restarts need scored results to merge; BIM's start is deterministic, so one run is all of them
    return _worst_case(
        _pgd_run(
            (_pgd_init, _pgd_step, _pgd_finish), apply, params, x, target, labels=labels, goal=goal, eps=eps,
            key=jax.random.fold_in(key, r) if config.randomised else None, row_ids=row_ids, steps=config.steps,
            step_size=alpha, config=one, value_range=value_range,
        )
        for r in range(config.restarts if config.randomised and config.keep_best else 1)
    )  # fmt: skip
