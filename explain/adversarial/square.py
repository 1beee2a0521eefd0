"""Square Attack (Andriushchenko et al. 2020): a score-based random search, no gradients, L∞ and L2.

Only the model's outputs are queried, so a model whose gradients are masked
(zero, noisy or wrong: quantisation, saturation, non-differentiable
preprocessing) is attacked as easily as one whose gradients are honest. If
Square breaks examples that every gradient attack left, the gradient attacks
were fooled (AutoAttack's gradient-masking flag).

Each query changes the perturbation ``δ`` inside one random square window of
side ``s`` (per example; ``s`` shrinks on a fixed schedule of the query
budget, from a window covering ``p_init`` of the image down to one pixel) and
keeps the change only if the objective J rises:

* L∞ (Algorithm 1): the window of every channel is set to ``±ε`` (a random sign
  per channel, redrawn as its opposite when it would change nothing); the
  start is vertical stripes of ``±ε``.
* L2 (Algorithm 3, simplified to one window per query): the window's mass is
  replaced by a random ``±`` pseudo-Gaussian bump (:func:`bump`) carrying the
  window's own L2 mass plus a share of the budget not yet used, then the whole
  ``δ`` is projected back onto the ε-sphere; the start is a mosaic of such bumps.

J defaults to the CW margin (the paper's untargeted loss), which is positive
exactly when the prediction has left the label. Inputs of shape ``(H, W, C)``
are images (channels last); ``(H, W)`` is one channel and ``(D,)`` is a 1×D
image, so tabular models can be attacked too.

Cost: one forward pass per query and one for the clean point; the host loop
stops early once every example is broken or has ε = 0 (those never change
again, so stopping does not change any result).

References:
  Andriushchenko, Croce, Flammarion, Hein. Square Attack: a query-efficient black-box
  adversarial attack via random search. ECCV 2020.
  Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse
  parameter-free attacks. ICML 2020 (Square with the schedule rescaled to the budget).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from explain.adversarial import attacks as A
from explain.targets import BoundTarget

# AutoAttack's schedule, on a budget rescaled to 10,000 queries: p_init / 2^i after these.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_CHECK_EVERY = 25  # queries between host checks for "every example broken"


def window_fraction(i: int, queries: int, p_init: float) -> float:
    """The share ``p`` of the image a square covers at query ``i`` of ``queries``."""
    it = int(i / queries * 10_000)
    return p_init / 2 ** sum(it > h for h in _HALVINGS)


def as_image(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(H, W, C)`` of an input shape: images channels-last; ``(H, W)`` one channel; ``(D,)`` a 1×D image."""
    if len(shape) == 3:
        return shape
    if len(shape) == 2:
        return (*shape, 1)
    if len(shape) == 1:
        return (1, shape[0], 1)
    raise ValueError(f"Square needs inputs of shape (H, W, C), (H, W) or (D,), got {shape}")


def side(p: float, image: tuple[int, int, int]) -> int:
    """The window side ``s = round(√(p·H·W))``, at least 1 and at most ``min(H, W)`` (a strip for 1×D)."""
    h, w, _ = image
    s = max(int(round(np.sqrt(p * h * w))), 1)
    return min(s, w) if h == 1 else min(s, h, w)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SquareState:
    """``delta``: the search's perturbation ``(N, H, W, C)``; ``j``: J at ``x + δ``; ``done``: broken;
    ``queries``: forward passes spent per example; ``kept``: the best point reported (by (success, J))."""

    delta: jax.Array
    j: jax.Array
    done: jax.Array
    queries: jax.Array
    kept: A.PGDState


def _window(key: jax.Array, image: tuple[int, int, int], s: jax.Array) -> jax.Array:
    """A ``(H, W, 1)`` bool mask of one ``s × s`` window at a uniform position (``1 × s`` on a 1×D image)."""
    h, w, _ = image
    sh = jnp.minimum(s, h)
    kh, kw = jax.random.split(key)
    top = jax.random.randint(kh, (), 0, h - sh + 1)
    left = jax.random.randint(kw, (), 0, w - s + 1)
    rows = jnp.arange(h)[:, None, None]
    cols = jnp.arange(w)[None, :, None]
    return (rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + s)


def bump(image: tuple[int, int, int], s: jax.Array) -> jax.Array:
    """The paper's pseudo-Gaussian ``(H, W, 1)`` over the top-left ``s × s`` window, unit L2 norm.

    ``M(r₁, r₂) = Σ_{k=0}^{⌊s/2⌋} 1/(n+1)²`` over the rings ``max(|r₁−c|, |r₂−c|) ≤ k``
    (Andriushchenko et al. 2020, eq. (5)): heavy in the middle, light at the edge.
    """
    h, w, _ = image
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    c = (s - 1) / 2
    ring = jnp.floor(jnp.maximum(jnp.abs(rows - c), jnp.abs(cols - c)))
    inside = (rows < s) & (cols < s)
    k = jnp.arange(max(h, w))[:, None, None]
    m = jnp.sum(jnp.where((ring[None] <= k) & (k <= s // 2), 1.0 / (k + 1.0) ** 2, 0.0), axis=0)
    m = jnp.where(inside, m, 0.0)
    return (m / jnp.maximum(jnp.sqrt(jnp.sum(m * m)), A._TINY))[:, :, None]


def _shift(a: jax.Array, top: jax.Array, left: jax.Array) -> jax.Array:
    return jnp.roll(a, (top, left), axis=(0, 1))


def _linf_proposal(key, delta, eps, image, s):
    kw, ks = jax.random.split(key)
    mask = _window(kw, image, s)
    sign = jax.random.rademacher(ks, (1, 1, image[2]), delta.dtype)
    new = jnp.where(mask, eps * sign, delta)
    # a draw equal to the window's current values would waste the query: take its opposite
    same = jnp.all(jnp.where(mask, new == delta, True))
    return jnp.where(same, jnp.where(mask, -eps * sign, delta), new)


def _l2_proposal(key, delta, eps, image, s):
    kw, ks = jax.random.split(key)
    mask = _window(kw, image, s)
    # the window's top-left corner, to move the bump there
    top = jnp.argmax(jnp.any(mask[:, :, 0], axis=1))
    left = jnp.argmax(jnp.any(mask[:, :, 0], axis=0))
    shape = _shift(bump(image, s), top, left)
    sign = jax.random.rademacher(ks, (1, 1, image[2]), delta.dtype)
    inside = jnp.sqrt(jnp.sum(jnp.where(mask, delta, 0.0) ** 2, axis=(0, 1), keepdims=True))  # per channel
    spare = jnp.maximum(eps**2 - jnp.sum(delta * delta), 0.0)
    mass = jnp.sqrt(inside**2 + spare / image[2])
    new = jnp.where(mask, sign * mass * shape, delta)
    n = jnp.sqrt(jnp.sum(new * new))
    return new * jnp.minimum(1.0, eps / jnp.maximum(n, A._TINY))


def _start(key, image, eps, norm, dtype):
    h, w, c = image
    if norm == "linf":
        return eps * jax.random.rademacher(key, (1, w, c), dtype) * jnp.ones((h, 1, 1), dtype)
    # a mosaic of bumps: side ~ a fifth of the image, random signs, scaled onto the ε-sphere
    s = max(min(h, w) // 5, 1)
    tile = bump((s, s, 1), jnp.asarray(s))[:, :, 0]
    reps = (-(-h // s), -(-w // s))
    signs = jax.random.rademacher(key, (*reps, c), dtype)
    mosaic = jnp.kron(signs, tile[:, :, None])[:h, :w]
    return mosaic * eps / jnp.maximum(jnp.sqrt(jnp.sum(mosaic * mosaic)), A._TINY)


def _score(apply, params, x, delta, target, value_range, labels, goal):
    """Scores ``clip(x + δ)``: the point, the δ applied (clipping shrinks it), logits, J and success."""
    x_new = A.clip_to_range(x + delta.reshape(x.shape), value_range)
    out, j, s = A._score(apply, params, x_new, target, labels, goal)
    return x_new, (x_new - x).reshape(delta.shape), out, j, s


def square_init(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    key: jax.Array,
    row_ids: Int[Array, " n"],
    config: A.AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> SquareState:
    """Scores the clean point and the start (stripes for L∞, a bump mosaic for L2): two forward passes."""
    image = as_image(x.shape[1:])
    kept = A.score_clean(apply, params, x, target, labels=labels, goal=goal)
    keys = A._per_row(key, row_ids, lambda k: jax.random.fold_in(k, 0))  # query 0
    delta = jax.vmap(lambda k, e: _start(k, image, e, config.norm, x.dtype))(keys, eps)
    # clipping into the range shrinks δ; keep the δ actually applied
    x0, delta, out0, j0, s0 = _score(apply, params, x, delta, target, value_range, labels, goal)
    # nothing can change an example already broken, or one with ε = 0
    done = kept.best_s | s0 | (eps <= 0)
    return SquareState(
        delta=delta, j=j0, done=done, queries=jnp.ones_like(j0, jnp.int32), kept=A._keep(kept, x0, out0, j0, s0)
    )


def square_step(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    state: SquareState,
    *,
    labels: Int[Array, " n"] | None = None,
    goal: Int[Array, " n"] | None = None,
    eps: Float[Array, " n"],
    key: jax.Array,
    row_ids: Int[Array, " n"],
    i: Int[Array, " "],
    s: Int[Array, " "],
    config: A.AttackConfig,
    value_range: tuple[float, float] | None = None,
) -> SquareState:
    """Query ``i``: one proposal per example not yet broken, a window of side ``s``; kept where J rises."""
    image = as_image(x.shape[1:])
    propose = _linf_proposal if config.norm == "linf" else _l2_proposal
    keys = A._per_row(key, row_ids, lambda k: jax.random.fold_in(k, i))
    delta = jax.vmap(lambda k, d, e: propose(k, d, e, image, s))(keys, state.delta, eps)
    x_new, applied, out, j, succ = _score(apply, params, x, delta, target, value_range, labels, goal)
    take = (j > state.j) & ~state.done
    kept = A._keep(state.kept, x_new, out, jnp.where(state.done, -jnp.inf, j), succ & ~state.done)
    return SquareState(
        delta=A._where_rows(take, applied, state.delta),
        j=jnp.where(take, j, state.j),
        done=state.done | (succ & take),
        queries=state.queries + ~state.done,
        kept=kept,
    )


def square_finish(state: SquareState) -> A.Adversarial:
    """The best point kept by (success, J); ``trace`` is J of the search at the end ``(N, 1)``."""
    return A.kept_result(state.kept, state.j[:, None])


_init = jax.jit(square_init, **A._STEP_STATIC)
_step = jax.jit(square_step, **A._STEP_STATIC)


def square_loop(
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
    key: jax.Array,
    row_ids: Int[Array, " n"] | None = None,
) -> A.Adversarial:
    """Square with ``config.steps`` queries per example (the start is the first), one compiled step per query.

    Example ``i`` draws query ``t`` from ``fold_in(fold_in(key, row_ids[i]), t)``, so results do not
    depend on chunking. ``trace`` is ``(N, 2)``: J at the start and at the end of the search.
    """
    x, eps, labels, goal = A._on_device(x, eps, labels, goal)
    row_ids = A._row_ids(row_ids, x)
    image = as_image(tuple(x.shape[1:]))
    static = A.step_config(dataclasses.replace(config, loss="ce", p_init=0.8))
    rows = dict(labels=labels, goal=goal, eps=eps, key=key, row_ids=row_ids, config=static, value_range=value_range)
    state = _init(apply, params, x, target, **rows)
    j0 = state.j
    for i in range(1, config.steps):
        if i % _CHECK_EVERY == 0 and bool(jnp.all(state.done)):
            break
        s = side(window_fraction(i, config.steps, config.p_init), image)
        state = _step(apply, params, x, target, state, **rows, i=jnp.asarray(i, jnp.int32), s=jnp.asarray(s))
    return A._with_steps(square_finish(state), [j0])
