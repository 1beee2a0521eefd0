"""Integrated Gradients, its adaptive-step variant, quadrature rules and baselines.

IG attributes ``F(x) - F(x')`` to input features by integrating the gradient
along the straight path from a baseline ``x'`` to ``x``:

    IG_i(x) = (x_i - x'_i) · ∫₀¹ ∂F(x' + α(x - x'))/∂x_i dα ≈ (x_i - x'_i) · Σ_k w_k ∂F(x' + α_k(x - x'))/∂x_i

Completeness (``Σ_i IG_i = F(x) - F(x')``) holds for the exact integral; the
quadrature error is reported per sample as ``convergence_delta``, as Captum does.

:func:`integrated_gradients_core` is the pure function (all steps in one call,
usable inside ``jax.jit``/``jax.vmap``); the public wrapper runs the same
:func:`path_chunk` over chunks of samples × steps within the memory budget
(:func:`explain.chunking.map_rows`, last chunk padded with zero weight), so
memory does not grow with ``N`` or ``steps``. The adaptive variant's data-dependent
doubling is a ``lax.while_loop`` over a static maximum of rounds (:func:`adaptive_refine`),
so it too has a pure core, :func:`integrated_gradients_adaptive_core`.

References:
  Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_choice, check_float, check_int, check_key
from explain.gradients import Prepared, prepare, target_and_grad
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget

Rule = Literal["gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
RULES: tuple[str, ...] = ("gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
_RULE_ALIASES = {"gausslegendre": "gauss_legendre"}  # Captum's spelling
BaselineKind = Literal["zero", "constant", "blur", "uniform"]
BASELINES: tuple[str, ...] = ("zero", "constant", "blur", "uniform")
# Gauss–Legendre nodes come from a dense eigenproblem (O(steps²) memory); beyond this many steps the
# quadrature error is far below float32 resolution anyway.
MAX_STEPS = 10_000


# ----------------------------------------------------------------------------- quadrature


def check_rule(rule: str, steps: Any, *, name: str = "steps") -> tuple[str, int]:
    """Validates ``(rule, steps)`` before any compilation; returns the canonical rule name.

    ``name`` is the argument named in errors (``start_steps``, ``max_steps`` for the adaptive variant).
    """
    rule = _RULE_ALIASES.get(rule, rule)
    check_choice("rule", rule, RULES)
    steps = check_int(name, steps, minimum=2 if rule == "riemann_trapezoid" else 1)
    if steps > MAX_STEPS:
        raise ValueError(f"expected {name} <= {MAX_STEPS}, got {steps}")
    return rule, steps


def quadrature(rule: Rule, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α_k`` in [0, 1] and weights ``w_k`` (summing to 1) of a rule with ``steps`` points.

    Gauss–Legendre (Captum's default) maps ``numpy.polynomial.legendre.leggauss``
    from [-1, 1] to [0, 1]; it is exact for polynomials of degree ``2·steps - 1``.
    The Riemann rules use ``steps`` equal cells (trapezoid: ``steps`` points
    including both ends), as ``captum.attr._utils.approximation_methods``.
    """
    rule, steps = check_rule(rule, steps)
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if rule == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)


# ----------------------------------------------------------------------------- baselines


def gaussian_blur(x: jax.Array, sigma: jax.Array | float) -> jax.Array:
    """Gaussian blur of images ``(N, H, W, C)`` with std ``sigma`` pixels, separable, differentiable in ``sigma``.

    Each axis is a matrix product with a row-normalised Gaussian kernel, so
    borders average over the pixels that exist and ``sigma → 0`` is the identity.
    """

    def kernel(size: int) -> jax.Array:
        d = jnp.arange(size, dtype=x.dtype)
        d2 = (d[:, None] - d[None, :]) ** 2
        s = jnp.maximum(jnp.asarray(sigma, x.dtype), 1e-3)
        k = jnp.exp(-d2 / (2.0 * s**2))
        return k / k.sum(axis=1, keepdims=True)

    y = jnp.einsum("ih,nhwc->niwc", kernel(x.shape[1]), x)
    return jnp.einsum("jw,niwc->nijc", kernel(x.shape[2]), y)


blur = jax.jit(gaussian_blur)  # compiled once; Blur IG uses it too


def check_baseline(
    model: Model,
    x: Any,
    baseline: BaselineKind | Any = "zero",
    *,
    key: jax.Array | None = None,
    value: float | None = None,
    blur_sigma: float | None = None,
) -> None:
    """The checks of :func:`make_baseline` on the user's ``x``, run before :func:`explain.gradients.prepare`
    (whose predicted-class forward pass compiles), so a bad baseline fails first.

    Raises:
      ValueError: unknown kind, a shape not ``(N, *input_shape)`` or ``input_shape``, NaN/inf,
      missing key, blur on non-images.
    """
    if isinstance(baseline, str):
        check_choice("baseline", baseline, BASELINES)
        if baseline == "constant" and value is not None:
            check_float("baseline_value", value, minimum=-np.inf)
        elif baseline == "blur":
            common.check_image(model, what="baseline='blur'")
            if blur_sigma is not None:
                check_float("blur_sigma", blur_sigma)
        elif baseline == "uniform":
            check_key(key, what="baseline='uniform'")
        return
    spec = tuple(model.input_spec.shape)
    shape = tuple(np.shape(x))
    n = shape[0] if len(shape) == len(spec) + 1 else "N"
    arr = np.asarray(baseline) if not isinstance(baseline, jax.Array) else baseline
    if tuple(arr.shape) not in ((n, *spec), spec):
        expect = f"({n}, {', '.join(map(str, spec))})"
        raise ValueError(
            f"expected baseline of shape {expect} (like x) or {spec} (one sample, broadcast), "
            f"got {tuple(arr.shape)}; or pass one of {list(BASELINES)}"
        )
    if not np.isfinite(np.asarray(arr)).all():
        raise ValueError("expected a finite baseline, got NaN or inf")


def make_baseline(
    model: Model,
    x: Float[Array, " n *features"] | np.ndarray,
    baseline: BaselineKind | Any = "zero",
    *,
    key: jax.Array | None = None,
    value: float | None = None,
    blur_sigma: float | None = None,
) -> np.ndarray:
    """A baseline ``x'`` shaped like ``x (N, ...)``, as a host array (``zero``/``constant``/one sample: a broadcast view).

    Args:
      baseline: ``"zero"``; ``"constant"`` (``value``, default the middle of the
        declared input range, else 0); ``"blur"`` (``x`` blurred with std
        ``blur_sigma`` pixels, default ``max(H, W) / 8``; images only);
        ``"uniform"`` (uniform noise over the declared range, else [0, 1]; needs
        ``key``); or an array shaped like ``x`` or like one sample (broadcast).

    Raises:
      ValueError: as :func:`check_baseline`.
    """
    check_baseline(model, x, baseline, key=key, value=value, blur_sigma=blur_sigma)
    if isinstance(baseline, str):
        if baseline == "zero":
            return np.broadcast_to(np.zeros((), x.dtype), x.shape)
        if baseline == "constant":
            lo, hi = model.input_spec.value_range or (0.0, 0.0)
            v = (lo + hi) / 2.0 if value is None else float(value)
            return np.broadcast_to(np.asarray(v, x.dtype), x.shape)
        if baseline == "blur":
            h, w, _ = model.input_spec.shape
            sigma = max(h, w) / 8.0 if blur_sigma is None else float(blur_sigma)
            return np.asarray(blur(jnp.asarray(x), sigma))
        lo, hi = common.value_range(model)
        return np.asarray(jax.random.uniform(key, x.shape, x.dtype, lo, hi))
    return np.broadcast_to(np.asarray(baseline, x.dtype), x.shape)


# ----------------------------------------------------------------------------- pure pieces


def path_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    baseline: Float[Array, " n *features"],
    nodes: Float[Array, " c 2"],
    mask: Float[Array, " c"],
) -> jax.Array:
    """Pure: ``(x - x') ⊙ Σ_k m_k w_k ∇F(x' + α_k (x - x'))`` over ``c`` nodes ``(α_k, w_k)``: additive over node chunks.

    Returns ``(N, ...)`` or ``(N, K, ...)`` for ``target="all"``.
    """
    baseline = baseline.astype(x.dtype)
    alphas, w = nodes[:, 0], nodes[:, 1] * mask  # (c,), (c,)
    a = alphas.reshape((alphas.shape[0],) + (1,) * x.ndim).astype(x.dtype)
    g, _ = common.grad_stack(apply, params, baseline[None] + a * (x - baseline)[None], target)  # (c, N, [K,] ...)
    s = common.weighted_sum(w, g)
    return common.expand_like(x - baseline, s) * s


def integrated_gradients_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    baseline: Float[Array, " n *features"] | None = None,
    steps: int = 50,
    rule: Rule = "gauss_legendre",
) -> Attribution:
    """Pure IG with every step in one call: values, ``convergence_delta`` and ``steps``.

    ``baseline`` defaults to zeros; the wrapper builds the other kinds with :func:`make_baseline`.
    """
    baseline = jnp.zeros_like(x) if baseline is None else baseline
    nodes = jnp.asarray(np.stack(quadrature(rule, steps), axis=1), x.dtype)
    values = path_chunk(apply, params, x, target, baseline, nodes, jnp.ones((steps,), x.dtype))
    diff = common.endpoints(apply, params, x, target, baseline)
    delta = values.reshape((*diff.shape, -1)).sum(-1) - diff
    return Attribution(values, "integrated_gradients", target.name, delta, jnp.full((x.shape[0],), steps, jnp.int32))


_path_chunk = jax.jit(path_chunk, static_argnums=0)


def path_integral(
    p: Prepared,
    baseline: Any,
    rule: Rule,
    steps: int,
    *,
    memory_budget: int | None,
    show_progress: bool = False,
) -> tuple[np.ndarray, jax.Array]:
    """``(IG values, convergence delta)`` of a prepared batch, chunked over samples × steps."""
    # Host array: slicing it per chunk costs no device op, so a new step count compiles nothing new.
    nodes = np.stack(quadrature(rule, steps), axis=1).astype(p.x.dtype)  # (S, 2)
    values = common.run_draws(_path_chunk, p, nodes, baseline, memory_budget=memory_budget, show_progress=show_progress)
    return values, common.delta(p, values, baseline, memory_budget)


# ----------------------------------------------------------------------------- public


def integrated_gradients(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    baseline: BaselineKind | Any = "zero",
    steps: int = 50,
    rule: Rule = "gauss_legendre",
    key: jax.Array | None = None,
    baseline_value: float | None = None,
    blur_sigma: float | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Integrated Gradients ``(x - x') ⊙ Σ_k w_k ∇F(x' + α_k (x - x'))`` with ``rule``'s nodes (:func:`quadrature`).

    Args (others: :mod:`explain.saliency`):
      baseline: ``"zero"`` (default), ``"constant"``, ``"blur"``, ``"uniform"`` or an
        array; see :func:`make_baseline`.
      steps: quadrature points, ``1 <= steps <= 10000`` (default 50, as Captum).
      rule: ``"gauss_legendre"`` (default, as Captum) or ``"riemann_left|right|middle|trapezoid"``.
      key: PRNG key, only for ``baseline="uniform"``.
      baseline_value, blur_sigma: options of the ``"constant"`` and ``"blur"`` baselines.

    Returns:
      :class:`Attribution` with ``convergence_delta = Σ values - (F(x) - F(x'))`` and ``steps`` per sample.

    Example:
      >>> a = integrated_gradients(m, x, target=y, steps=64)
      >>> a.values.shape == x.shape, float(abs(a.convergence_delta).max())
    """
    rule, steps = check_rule(rule, steps)
    check_baseline(as_model(model), x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    p = prepare(model, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
    base = make_baseline(p.model, p.x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    values, delta = path_integral(p, base, rule, steps, memory_budget=memory_budget, show_progress=show_progress)
    n_steps = jnp.full((p.n,), steps, jnp.int32)
    return Attribution(jax.device_put(values), "integrated_gradients", p.target.name, delta, n_steps)


def integrated_gradients_adaptive(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    tolerance: float = 1e-3,
    start_steps: int = 16,
    max_steps: int = 4096,
    baseline: BaselineKind | Any = "zero",
    rule: Rule = "gauss_legendre",
    key: jax.Array | None = None,
    baseline_value: float | None = None,
    blur_sigma: float | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Integrated Gradients that doubles its steps until every sample's completeness error is small.

    Starting at ``start_steps``, the samples whose ``|δ| > tolerance · (1 + |F(x) - F(x')|)``
    (a mixed absolute/relative test, as ``numpy.isclose``) are recomputed with
    twice the steps, until all pass or ``max_steps`` is reached. Each sample keeps
    the result of the first step count that passed (or of ``max_steps``). The same rule as
    :func:`integrated_gradients_adaptive_core` (which runs it as one masked ``while_loop`` for
    ``jax.jit``/``jax.vmap``); here each round recomputes only the unconverged samples, their
    (sample, node) pairs packed into calls of a fixed size.

    Args:
      tolerance: ``> 0``; see above.
      start_steps, max_steps: ``1 <= start_steps <= max_steps <= 10000``.
      memory_budget: rows per gradient call, fixed once from it: each call takes that many
        (sample, node) pairs of the unconverged samples, whatever the round, so doubling
        neither recompiles nor pads samples.
      (others as :func:`integrated_gradients`; ``target="all"`` is not supported)

    Returns:
      :class:`Attribution` whose ``steps (N,)`` are the steps each sample used
      and ``convergence_delta (N,)`` its final error.
    """
    tolerance, rule, start_steps, max_steps = check_adaptive(tolerance, rule, start_steps, max_steps)
    check_baseline(as_model(model), x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    p = prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    base = make_baseline(p.model, p.x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    n = p.n
    # F(x) - F(x') once, on the host: every round's completeness error is its sum minus this.
    diff = common.endpoint_diff(p, base, memory_budget)
    scale = 1.0 + np.abs(diff)
    # One compiled shape for every round: rows of (sample, node) pairs, as many as one call may take.
    size = max(1, min(common.rows(p, memory_budget), n * start_steps))
    fn = functools.partial(_pair_chunk, p.model.apply, p.model.params)
    host_base = np.asarray(base, p.x.dtype)
    values, delta = np.zeros(p.x.shape, p.x.dtype), np.zeros((n,), p.x.dtype)
    used = np.zeros((n,), np.int32)
    todo = np.arange(n)
    steps = start_steps
    with chunking.progress(0, enabled=show_progress, desc="pairs") as bar:
        while todo.size:
            nodes = np.stack(quadrature(rule, steps), axis=1).astype(p.x.dtype)
            bar.total += -(-todo.size * steps // size)
            v = _pair_sums(fn, p, host_base, todo, nodes, size, bar)
            d = v.reshape(todo.size, -1).sum(axis=1) - diff[todo]
            values[todo], delta[todo], used[todo] = v, d, steps
            todo = todo[np.abs(d) > tolerance * scale[todo]]
            if steps >= max_steps:
                break
            steps = min(2 * steps, max_steps)
    return Attribution(
        jax.device_put(values), "integrated_gradients_adaptive", p.target.name,
        convergence_delta=jnp.asarray(delta), steps=jnp.asarray(used),
    )  # fmt: skip


def pair_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " r *features"],
    target: BoundTarget,
    baseline: Float[Array, " r *features"],
    nodes: Float[Array, " r 2"],
) -> Float[Array, " r *features"]:
    """Pure: ``w_r (x_r - x'_r) ⊙ ∇F(x'_r + α_r (x_r - x'_r))`` for rows of (sample, node ``(α_r, w_r)``) pairs.

    Summed over a sample's rows this is its IG; rows of any samples and nodes share one call.
    """
    baseline = baseline.astype(x.dtype)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    a, w = nodes[:, 0].reshape(shape).astype(x.dtype), nodes[:, 1].reshape(shape).astype(x.dtype)
    _, g, _ = target_and_grad(apply, params, baseline + a * (x - baseline), target)
    return w * (x - baseline) * g


_pair_chunk = jax.jit(pair_chunk, static_argnums=0)


def _pair_sums(
    fn: Callable, p: Prepared, base: np.ndarray, todo: np.ndarray, nodes: np.ndarray, size: int, bar: Any
) -> np.ndarray:
    """IG of the samples ``todo`` with ``nodes (S, 2)``: ``(len(todo), ...)``, from calls of ``size`` pairs each.

    Pairs run sample-major, so each call holds whole or partial node ranges of a few samples; the
    last call repeats the last pair (its rows are dropped). No sample is padded: where one sample
    is left, a call holds ``size`` of its nodes, not ``size`` rows of which most are copies.
    """
    steps = nodes.shape[0]
    total = todo.size * steps
    out = np.zeros((todo.size, *p.x.shape[1:]), p.x.dtype)
    for start, stop in chunking.chunk_bounds(total, size):
        pair = np.minimum(np.arange(start, start + size), total - 1)
        local = pair // steps
        sid = todo[local]
        sub = p.rows(sid)
        g = np.asarray(fn(sub.x, sub.target, base[sid], nodes[pair % steps]))[: stop - start]
        local = local[: stop - start]
        first = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])  # each sample's first row in this call
        out[local[first]] += np.add.reduceat(g, first, axis=0)
        bar.update()
    return out


def check_adaptive(tolerance: Any, rule: str, start_steps: Any, max_steps: Any) -> tuple[float, str, int, int]:
    """Validates the adaptive options on the host; returns ``(tolerance, rule, start_steps, max_steps)``."""
    tolerance = check_float("tolerance", tolerance)
    if tolerance == 0:
        raise ValueError("expected tolerance > 0, got 0")
    rule, start_steps = check_rule(rule, start_steps, name="start_steps")
    _, max_steps = check_rule(rule, max_steps, name="max_steps")
    if max_steps < start_steps:
        raise ValueError(f"expected max_steps >= start_steps ({start_steps}), got {max_steps}")
    return tolerance, rule, start_steps, max_steps


# The longest schedule (start_steps = 1, max_steps = MAX_STEPS): its rounds before the last sum to under
# 2 · MAX_STEPS nodes, and there are at most bit_length + 1 of them.
_SCHEDULE_NODES, _SCHEDULE_ROUNDS = 3 * MAX_STEPS, MAX_STEPS.bit_length() + 1


def schedule(rule: Rule, start_steps: int, max_steps: int, *, padded: bool = False) -> tuple[np.ndarray, ...]:
    """The rounds of the adaptive variant: ``nodes (T, 2)``, ``counts (R,)``, ``offsets (R,)``.

    Round ``r`` uses ``counts[r] = min(start_steps · 2^r, max_steps)`` steps, whose
    ``(α_k, w_k)`` (:func:`quadrature`) are ``nodes[offsets[r]:offsets[r] + counts[r]]``.
    ``padded``: zero rows and zero-step rounds up to the longest schedule, so every
    schedule has the same shapes and a new one compiles nothing.
    """
    counts = [start_steps]
    while counts[-1] < max_steps:
        counts.append(min(2 * counts[-1], max_steps))
    nodes = np.concatenate([np.stack(quadrature(rule, s), axis=1) for s in counts])
    offsets = np.cumsum([0, *counts[:-1]])
    if padded:
        nodes = np.pad(nodes, ((0, _SCHEDULE_NODES - len(nodes)), (0, 0)))
        counts, offsets = (np.pad(a, (0, _SCHEDULE_ROUNDS - len(a))) for a in (counts, offsets))
    return nodes, np.asarray(counts, np.int32), np.asarray(offsets, np.int32)


def adaptive_refine(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    baseline: Float[Array, " n *features"],
    nodes: Float[Array, " t 2"],
    counts: Int[Array, " r"],
    offsets: Int[Array, " r"],
    tolerance: Float[Array, ""] | float,
    *,
    chunk: int,
    group: int,
) -> Attribution:
    """Pure: IG of every sample at the :func:`schedule`'s rounds until its error passes, as a fixed loop.

    Round ``r`` recomputes, at ``counts[r]`` steps, only the rows that still fail
    ``|δ| <= tolerance · (1 + |F(x) - F(x')|)``: they are sorted first and taken
    ``group`` at a time, ``chunk`` steps per gradient call (``group · chunk`` model rows),
    so a round costs the failing rows, not ``N``. The loop ends when no row fails or the
    rounds (at most ``R``, a static bound) run out; the others keep their last round by masking.
    """
    n, group = x.shape[0], min(group, x.shape[0])
    baseline = baseline.astype(x.dtype)
    # `chunk` zero rows past the end: a round's last chunk may read past the table (masked, never clamped).
    nodes = jnp.concatenate([nodes.astype(x.dtype), jnp.zeros((chunk, 2), x.dtype)])
    diff = common.endpoints(apply, params, x, target, baseline)  # (N,)
    limit = tolerance * (1.0 + jnp.abs(diff))
    lanes = jnp.arange(chunk)

    def ig(idx: jax.Array, r: jax.Array) -> jax.Array:  # rows idx (group,) at round r's steps
        xs, ts, bs = x[idx], target.rows(idx), baseline[idx]

        def step(c, acc):
            part = jax.lax.dynamic_slice_in_dim(nodes, offsets[r] + c * chunk, chunk)
            return acc + path_chunk(apply, params, xs, ts, bs, part, c * chunk + lanes < counts[r])

        return jax.lax.fori_loop(0, -(-counts[r] // chunk), step, jnp.zeros_like(xs))

    def refine(state):
        r, values, delta, used, todo = state
        order = jnp.argsort(~todo, stable=True)  # failing rows first

        def one_group(g, out):
            idx = jax.lax.dynamic_slice_in_dim(order, g * group, group)  # the last is clamped back: overlap is harmless
            return out.at[idx].set(ig(idx, r))

        new = jax.lax.fori_loop(0, -(-todo.sum() // group), one_group, values)
        d = new.reshape(n, -1).sum(1) - diff
        values = jnp.where(todo.reshape((n,) + (1,) * (x.ndim - 1)), new, values)
        delta, used = jnp.where(todo, d, delta), jnp.where(todo, counts[r], used)
        return r + 1, values, delta, used, todo & (jnp.abs(d) > limit)

    def more(state):
        r, *_, todo = state
        return (r < counts.shape[0]) & (counts[jnp.minimum(r, counts.shape[0] - 1)] > 0) & todo.any()

    init = (jnp.int32(0), jnp.zeros_like(x), jnp.zeros((n,), x.dtype), jnp.zeros((n,), jnp.int32), jnp.ones((n,), bool))
    _, values, delta, used, _ = jax.lax.while_loop(more, refine, init)
    return Attribution(values, "integrated_gradients_adaptive", target.name, delta, used)


def integrated_gradients_adaptive_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    baseline: Float[Array, " n *features"] | None = None,
    tolerance: float = 1e-3,
    start_steps: int = 16,
    max_steps: int = 4096,
    rule: Rule = "gauss_legendre",
    chunk: int | None = None,
    group: int | None = None,
) -> Attribution:
    """Pure :func:`integrated_gradients_adaptive` in one call (:func:`adaptive_refine` of the :func:`schedule`).

    ``chunk`` steps (default ``start_steps``) of ``group`` rows (default all) per gradient call;
    ``baseline`` defaults to zeros.
    """
    tolerance, rule, start_steps, max_steps = check_adaptive(tolerance, rule, start_steps, max_steps)
    baseline = jnp.zeros_like(x) if baseline is None else baseline
    nodes, counts, offsets = (jnp.asarray(a) for a in schedule(rule, start_steps, max_steps))
    chunk, group = chunk or start_steps, group or x.shape[0]
    return adaptive_refine(
        apply, params, x, target, baseline, nodes, counts, offsets, tolerance, chunk=chunk, group=group
    )
