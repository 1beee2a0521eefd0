"""Gradient attacks: FGSM, BIM and PGD under L∞ and L2, batched and jitted.

Every attack ascends an objective ``J`` built from the cross-entropy ``L``:
``J = L(x, y)`` untargeted (move away from label ``y``), ``J = −L(x, t)``
targeted (move towards class ``t``). One step is the steepest ascent direction
of ``J`` for the attack's norm, scaled by a step ``α``:

* L∞: ``x ← x + α·sign(∇J)`` (Goodfellow et al. 2015);
* L2: ``x ← x + α·∇J / ‖∇J‖₂``, the norm taken per example over all of its
  input axes (not over the batch, and never a zero division: a zero gradient
  makes a zero step).

After each step the perturbation ``δ = x' − x`` is clipped into the model's
input range (``model.input_spec.value_range``; ``None`` means no clipping)
and then projected onto the ε-ball. With ``x`` in range, this order keeps
both constraints, since the ε-ball projection only shrinks ``δ`` towards 0.

The pure functions (:func:`fgsm_pure`, :func:`pgd_pure`, :func:`perturbation`)
take an ``apply(params, x)`` and a loss ``loss_fn(outputs, labels) -> (N,)`` so
they run inside any ``jax.jit``, a training step included. The public
wrappers (:func:`fgsm`, :func:`bim`, :func:`pgd`) validate and resolve labels
before compiling, and are thin calls to :func:`explain.adversarial.sweep.sweep`.

References:
  Goodfellow, Shlens, Szegedy (2015), Explaining and harnessing adversarial examples.
  Kurakin, Goodfellow, Bengio (2017), Adversarial examples in the physical world (BIM).
  Madry et al. (2018), Towards deep learning models resistant to adversarial attacks (PGD).
  Wong, Rice, Kolter (2020), Fast is better than free (FGSM with random start).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from explain.gradients import target_and_grad
from explain.targets import TargetFn

Norm = Literal["linf", "l2"]
AttackKind = Literal["fgsm", "pgd"]
NORMS: tuple[str, ...] = ("linf", "l2")
_TINY = 1e-12


# ----------------------------------------------------------------------------- geometry


def _per_example(v: jax.Array, like: jax.Array) -> jax.Array:
    """``(N,)`` -> ``(N, 1, ..., 1)`` broadcastable against ``like``."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def perturbation_norm(delta: jax.Array, norm: Norm) -> jax.Array:
    """‖δ_i‖ per example over all non-batch axes: ``(N, ...) -> (N,)``."""
    flat = delta.reshape(delta.shape[0], -1)
    return jnp.max(jnp.abs(flat), axis=1) if norm == "linf" else jnp.sqrt(jnp.sum(flat * flat, axis=1))


def steepest_direction(g: jax.Array, norm: Norm) -> jax.Array:
    """The unit-norm step maximising ``⟨g, d⟩``: ``sign(g)`` (L∞) or ``g/‖g‖₂`` per example (L2)."""
    if norm == "linf":
        return jnp.sign(g)
    # Rescale by the largest entry first: squares of tiny gradients (saturated
    # softmax) underflow in float32, and a zero gradient must give a zero step.
    m = _per_example(perturbation_norm(g, "linf"), g)
    g = jnp.where(m > 0, g / jnp.where(m > 0, m, 1.0), 0.0)
    return g / _per_example(jnp.maximum(perturbation_norm(g, "l2"), _TINY), g)


def project(delta: jax.Array, eps: jax.Array, norm: Norm) -> jax.Array:
    """Euclidean projection of each ``δ_i`` onto ``{‖δ‖ ≤ ε_i}``; ``eps`` is ``(N,)``."""
    e = _per_example(eps, delta)
    if norm == "linf":
        return jnp.clip(delta, -e, e)
    n = _per_example(perturbation_norm(delta, "l2"), delta)
    return delta * jnp.minimum(1.0, e / jnp.maximum(n, _TINY))


def clip_to_range(x: jax.Array, value_range: tuple[float, float] | None) -> jax.Array:
    """Clips into the declared input range; ``None`` (no declared range) leaves ``x`` as is."""
    return x if value_range is None else jnp.clip(x, value_range[0], value_range[1])


def constrain(x: jax.Array, x_new: jax.Array, eps: jax.Array, norm: Norm, value_range) -> jax.Array:
    """``x + Π_ε(clip(x_new) − x)``: inside the input range and the ε-ball around ``x``."""
    return x + project(clip_to_range(x_new, value_range) - x, eps, norm)


def random_start(keys: jax.Array, x: jax.Array, eps: jax.Array, norm: Norm) -> jax.Array:
    """A uniform draw from each example's ε-ball (one key per example, so chunking cannot change it).

    L∞: ``U[−ε, ε]`` per coordinate. L2: a uniform point of the d-ball, direction
    ``z/‖z‖`` with ``z ~ N(0, I)`` and radius ``ε·u^{1/d}``.
    """
    shape = x.shape[1:]

    def one(k):
        if norm == "linf":
            return jax.random.uniform(k, shape, x.dtype, -1.0, 1.0)
        kz, ku = jax.random.split(k)
        z = jax.random.normal(kz, shape, x.dtype)
        r = jax.random.uniform(ku, (), x.dtype) ** (1.0 / z.size)
        return z / jnp.maximum(jnp.linalg.norm(z.ravel()), _TINY) * r

    return jax.vmap(one)(keys) * _per_example(eps, x)


def is_success(outputs: jax.Array, labels: jax.Array, targeted: bool) -> jax.Array:
    """Untargeted: the prediction left ``labels``; targeted: it reached them. ``(N,)`` bool."""
    pred = jnp.argmax(outputs, axis=1)
    return pred == labels if targeted else pred != labels


# ----------------------------------------------------------------------------- pure attacks


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Static attack settings (hashable: they key the compile cache).

    Attributes:
      kind: ``"fgsm"`` (one step of size ε from ``x``) or ``"pgd"`` (iterated, projected).
      norm: ``"linf"`` or ``"l2"``.
      steps: gradient steps (PGD/BIM).
      rel_step_size: step ``α = rel_step_size·ε``; ``None`` means Madry et al.'s
        ``2.5/steps`` (PGD and BIM alike), ``1.25`` for FGSM-RS (Wong et al.).
      random_start: start from a uniform point of the ε-ball (PGD) instead of ``x`` (BIM).
      restarts: independent random starts; the worst case per example is kept.
      keep_best: return the best iterate per example, ranked by (success, J)
        among iterates whose J is at least the clean J; ``False`` returns the
        last iterate (what adversarial training uses: ``steps`` gradients, no
        extra forward passes).
    """

    kind: AttackKind = "pgd"
    norm: Norm = "linf"
    steps: int = 10
    rel_step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    keep_best: bool = True

    def __post_init__(self):
        if self.kind not in ("fgsm", "pgd"):
            raise ValueError(f"unknown attack kind {self.kind!r}; expected 'fgsm' or 'pgd'")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; expected one of {list(NORMS)}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"expected steps >= 1 (an int), got {self.steps!r}")
        if not isinstance(self.restarts, int) or self.restarts < 1:
            raise ValueError(f"expected restarts >= 1 (an int), got {self.restarts!r}")
        if self.rel_step_size is not None and not self.rel_step_size > 0:
            raise ValueError(f"expected rel_step_size > 0 (the step as a fraction of eps), got {self.rel_step_size!r}")

    @property
    def alpha(self) -> float:
        """The step as a fraction of ε."""
        if self.rel_step_size is not None:
            return float(self.rel_step_size)
        return 2.5 / self.steps


class PureResult(NamedTuple):
    """What a pure attack returns for one batch.

    ``raw``: the attack's point before clipping into the input range;
    ``x_adv``: inside the range and the ε-ball; ``outputs``: logits at ``x_adv``;
    ``objective``: J at ``x_adv`` (N,); ``trace``: J per example and iterate (N, T).
    """

    raw: jax.Array
    x_adv: jax.Array
    outputs: jax.Array
    objective: jax.Array
    trace: jax.Array


def _objective_and_grad(apply, loss_fn, params, x, labels, targeted):
    t, g, out = target_and_grad(apply, loss_fn, params, x, labels)
    return (-t, -g, out) if targeted else (t, g, out)


def fgsm_pure(
    apply: Callable,
    loss_fn: TargetFn,
    params: Any,
    x: jax.Array,
    labels: jax.Array,
    eps: jax.Array,
    *,
    norm: Norm = "linf",
    targeted: bool = False,
    value_range: tuple[float, float] | None = None,
) -> PureResult:
    """FGSM / FGM: ``x_adv = clip(x + ε·d(∇J(x)))`` with one gradient and one forward pass.

    ``d`` is :func:`steepest_direction`; ``eps`` is ``(N,)``. In range, the
    perturbation is exactly ``ε·sign(∇J)`` (L∞); clipping only shrinks it.
    """
    j0, g, _ = _objective_and_grad(apply, loss_fn, params, x, labels, targeted)
    raw = x + _per_example(eps, x) * steepest_direction(g, norm)
    x_adv = constrain(x, raw, eps, norm, value_range)  # clipping an out-of-range x could leave the ball
    out = apply(params, x_adv)
    j = -loss_fn(out, labels) if targeted else loss_fn(out, labels)
    return PureResult(raw, x_adv, out, j, jnp.stack([j0, j], axis=1))


def _better(s_new, j_new, s_old, j_old, j_floor):
    """Lexicographic (success, J), admitting only candidates with J ≥ the clean J."""
    return ((s_new & ~s_old) | ((s_new == s_old) & (j_new > j_old))) & (j_new >= j_floor)


class PGDState(NamedTuple):
    """The iterate ``x_t`` and the best point so far with its logits, J and success; ``j_clean`` is J(x)."""

    xi: jax.Array
    best_x: jax.Array
    best_out: jax.Array
    best_j: jax.Array
    best_s: jax.Array
    j_clean: jax.Array


def _score(loss_fn, out, labels, targeted):
    j = -loss_fn(out, labels) if targeted else loss_fn(out, labels)
    return j, is_success(out, labels, targeted)


def _keep(state: PGDState, xi, out, j, s) -> PGDState:
    take = _better(s, j, state.best_s, state.best_j, state.j_clean)
    return state._replace(
        best_x=jnp.where(_per_example(take, xi), xi, state.best_x),
        best_out=jnp.where(take[:, None], out, state.best_out),
        best_j=jnp.where(take, j, state.best_j),
        best_s=jnp.where(take, s, state.best_s),
    )


def pgd_init(
    apply, loss_fn, params, x, labels, eps, keys, *, config: AttackConfig, targeted=False, value_range=None
) -> PGDState:
    """``x₀ = x + Π_ε(clip(x + δ₀) − x)`` with ``δ₀ ~ U(ε-ball)`` (or 0); scores the clean point when ``keep_best``."""
    delta = random_start(keys, x, eps, config.norm) if config.random_start else jnp.zeros_like(x)
    x0 = constrain(x, x + delta, eps, config.norm, value_range)
    n = x.shape[0]
    if not config.keep_best:  # nothing is compared, so no extra forward pass
        empty = jnp.zeros((n,), x.dtype)
        return PGDState(x0, x0, jnp.zeros((n, 0), x.dtype), empty, empty.astype(bool), empty)
    out = apply(params, x)
    j, s = _score(loss_fn, out, labels, targeted)
    return PGDState(x0, x, out, j, s, j)


def pgd_step(
    apply, loss_fn, params, x, labels, eps, state: PGDState, *, config: AttackConfig, targeted=False, value_range=None
):
    """One step: ``x_{t+1} = x + Π_ε(clip(x_t + α·d(∇J(x_t))) − x)``; returns ``(state, J(x_t) (N,))``."""
    j, g, out = _objective_and_grad(apply, loss_fn, params, state.xi, labels, targeted)
    if config.keep_best:
        state = _keep(state, state.xi, out, j, is_success(out, labels, targeted))
    alpha = _per_example(config.alpha * eps, x)
    x_next = constrain(x, state.xi + alpha * steepest_direction(g, config.norm), eps, config.norm, value_range)
    return state._replace(xi=x_next), j


def pgd_finish(apply, loss_fn, params, labels, state: PGDState, *, config: AttackConfig, targeted=False):
    """Scores the last iterate (one forward pass) and returns ``(best_x, logits, J)`` and J at the last iterate."""
    if not config.keep_best:
        return state.xi, state.best_out, state.best_j, state.best_j
    out = apply(params, state.xi)
    j, s = _score(loss_fn, out, labels, targeted)
    state = _keep(state, state.xi, out, j, s)
    return state.best_x, state.best_out, state.best_j, j


def pgd_pure(
    apply: Callable,
    loss_fn: TargetFn,
    params: Any,
    x: jax.Array,
    labels: jax.Array,
    eps: jax.Array,
    keys: jax.Array,
    *,
    config: AttackConfig,
    targeted: bool = False,
    value_range: tuple[float, float] | None = None,
) -> PureResult:
    """PGD (Madry et al. 2018), BIM with ``random_start=False``, FGSM-RS with one step.

    ``δ₀ ~ U(ε-ball)`` (or 0), then ``steps`` times
    ``x_{t+1} = x + Π_ε(clip(x_t + α·d(∇J(x_t))) − x)`` with ``α = config.alpha·ε``.
    The steps are unrolled when traced (``steps`` is small in training); the
    public attacks instead loop in Python over one jitted :func:`pgd_step`,
    which on XLA CPU is several times faster than ``lax.fori_loop``.

    Cost: ``steps`` gradient passes, plus two forward passes when
    ``keep_best`` (the clean point and the last iterate are scored too).

    Args:
      x: ``(N, ...)`` clean inputs; labels: ``(N,)`` int; eps: ``(N,)``;
      keys: ``(N,)`` PRNG keys, one per example (used when ``random_start``).
    """
    kw = dict(config=config, targeted=targeted)
    state = pgd_init(apply, loss_fn, params, x, labels, eps, keys, value_range=value_range, **kw)
    trace = []
    for _ in range(config.steps):
        state, j = pgd_step(apply, loss_fn, params, x, labels, eps, state, value_range=value_range, **kw)
        trace.append(j)
    bx, bout, bj, jk = pgd_finish(apply, loss_fn, params, labels, state, **kw)
    return PureResult(bx, bx, bout, bj, jnp.stack([*trace, jk], axis=1))


def perturbation(
    apply: Callable,
    loss_fn: TargetFn,
    *,
    eps: float,
    config: AttackConfig,
    value_range: tuple[float, float] | None,
) -> Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]:
    """A pure ``perturb(params, x (N, ...), labels (N,), key) -> x_adv`` for a jitted training step.

    Untargeted, last iterate (``keep_best`` is ignored: training wants the
    attack's point, at exactly ``steps`` gradient passes). FGSM-RS is
    ``AttackConfig("pgd", steps=1, rel_step_size=1.25, random_start=True)``.
    """
    if not eps >= 0:
        raise ValueError(f"expected eps >= 0, got {eps!r}")
    cfg = dataclasses.replace(config, keep_best=False, restarts=1)

    def perturb(params, x, labels, key):
        e = jnp.full((x.shape[0],), eps, x.dtype)
        if cfg.kind == "fgsm":
            return jax.lax.stop_gradient(
                fgsm_pure(apply, loss_fn, params, x, labels, e, norm=cfg.norm, value_range=value_range).x_adv
            )
        keys = jax.random.split(key, x.shape[0])
        res = pgd_pure(apply, loss_fn, params, x, labels, e, keys, config=cfg, value_range=value_range)
        return jax.lax.stop_gradient(res.x_adv)

    return perturb


@functools.cache
def compiled_attack(
    apply: Callable, loss_fn: TargetFn, config: AttackConfig, targeted: bool, value_range: tuple[float, float] | None
) -> Callable:
    """``run(params, x, labels, eps (N,), keys (N,)) -> PureResult``, jitted once per static setting.

    Restarts are a loop around ``run``, so ``config.restarts`` does not key the cache.
    """
    if config.restarts != 1:
        return compiled_attack(apply, loss_fn, dataclasses.replace(config, restarts=1), targeted, value_range)
    if config.kind == "fgsm":

        def run(params, x, labels, eps, keys):
            del keys
            return fgsm_pure(
                apply, loss_fn, params, x, labels, eps, norm=config.norm, targeted=targeted, value_range=value_range
            )

        return jax.jit(run)

    init, step, finish = _pgd_pieces(
        apply, loss_fn, dataclasses.replace(config, steps=1, rel_step_size=config.alpha), targeted, value_range
    )

    def run(params, x, labels, eps, keys):
        # a Python loop over one compiled step (see pgd_pure)
        state = init(params, x, labels, eps, keys)
        trace = []
        for _ in range(config.steps):
            state, j = step(params, x, labels, eps, state)
            trace.append(j)
        bx, bout, bj, jk = finish(params, labels, state)
        return PureResult(bx, bx, bout, bj, jnp.stack([*trace, jk], axis=1))

    return run


@functools.cache
def _pgd_pieces(apply, loss_fn, config: AttackConfig, targeted: bool, value_range):
    """Jitted init/step/finish; ``config`` has the step size resolved, so the number of steps never recompiles."""
    kw = dict(config=config, targeted=targeted)
    init = jax.jit(functools.partial(pgd_init, apply, loss_fn, value_range=value_range, **kw))
    step = jax.jit(functools.partial(pgd_step, apply, loss_fn, value_range=value_range, **kw))
    finish = jax.jit(functools.partial(pgd_finish, apply, loss_fn, **kw))
    return init, step, finish


@functools.partial(jax.jit, static_argnames=("norm", "targeted"))
def summarise(x: jax.Array, x_adv: jax.Array, outputs: jax.Array, labels: jax.Array, *, norm: Norm, targeted: bool):
    """``(success (N,), ‖x_adv − x‖ (N,))`` in one compiled call."""
    return is_success(outputs, labels, targeted), perturbation_norm(x_adv - x, norm)


@functools.partial(jax.jit, static_argnames=("targeted",))
def merge_restarts(a: PureResult, b: PureResult, labels: jax.Array, targeted: bool) -> PureResult:
    """Per example, the better of two restarts by (success, J)."""
    sa, sb = is_success(a.outputs, labels, targeted), is_success(b.outputs, labels, targeted)
    take = (sb & ~sa) | ((sb == sa) & (b.objective > a.objective))
    pick = lambda u, v: jnp.where(_per_example(take, u), v, u)  # noqa: E731
    return PureResult(
        pick(a.raw, b.raw),
        pick(a.x_adv, b.x_adv),
        pick(a.outputs, b.outputs),
        pick(a.objective, b.objective),
        pick(a.trace, b.trace),
    )
