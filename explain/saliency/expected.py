"""Expected Gradients / GradientSHAP: Integrated Gradients averaged over baselines from a reference set.

With baselines ``b`` drawn from a reference set ``R`` and ``α ~ U(0, 1)``:

    EG(x) = E_{b ~ R, α ~ U(0,1)} [ (x - b) ⊙ ∇F(b + α (x - b)) ]

a Monte-Carlo estimate of IG averaged over the baseline distribution, whose
completeness is ``Σ EG = F(x) - E_b F(b)`` (reported as ``convergence_delta``
against the drawn baselines and, with ``noise_level > 0``, the drawn noisy inputs:
``Σ EG - mean_s (F(x_s) - F(b_s))``). GradientSHAP (Captum) is the same estimator with
optional Gaussian noise on ``x`` and Captum's defaults (``n_samples=5``, no noise). The
noise σ follows SmoothGrad's ``noise_level`` convention (:func:`explain.saliency.smooth.noise_sigma`):
a fraction of the declared value range's width, else of each sample's ``max - min``.

Draw ``s`` of row ``i`` uses ``fold_in(fold_in(key, s), i)`` (baseline index, ``α`` and
noise), so the result depends on the key only, never on how rows or draws are chunked.
A chunk of ``c`` draws of ``N`` rows is ``c · N`` rows through one backward pass.

References:
  Erion, Janizek, Sturmfels, Lundberg, Lee. Improving performance of deep learning
  models with axiomatic attribution priors and expected gradients. Nat. Mach. Intell. 2021.
  Lundberg, Lee. A Unified Approach to Interpreting Model Predictions (SHAP). NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Shaped

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_float, check_int, check_key
from explain.gradients import prepare
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.saliency.smooth import noise_scale, noise_sigma
from explain.targets import BoundTarget


def expected_gradients_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    row_ids: Int[Array, " n"],
    idx: Int[Array, " c"],
    mask: Float[Array, " c"],
    *,
    references: Float[Array, " m *features"],
    key: jax.Array,
    noise_level: Any = 0.0,
    value_range: tuple[float, float] | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pure: ``(Σ_s m_s (x_s - b_s) ⊙ ∇F(b_s + α_s (x_s - b_s)), Σ_s m_s F(b_s), Σ_s m_s F(x_s))`` over ``c`` draws.

    ``x_s`` is the (noisy) input of draw ``s``; additive over draw chunks. Shapes
    ``(N, [K,] ...)``, ``(N[, K])``, ``(N[, K])``.
    """
    sigma = noise_scale(x, noise_level, value_range)  # per row: chunking changes nothing
    m = references.shape[0]
    refs = references.astype(x.dtype)

    def one(s, i, xi, si):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, s), i), 3)
        b = refs[jax.random.randint(k1, (), 0, m)]
        alpha = jax.random.uniform(k2, (), x.dtype)
        xn = xi + si * jax.random.normal(k3, xi.shape, x.dtype)
        return b, alpha, xn

    rows = jax.vmap(one, in_axes=(None, 0, 0, 0))
    b, alpha, xn = jax.vmap(lambda s: rows(s, row_ids, x, sigma))(idx)  # (c, N, ...), (c, N), (c, N, ...)
    diff = xn - b
    a = alpha.reshape(alpha.shape + (1,) * (x.ndim - 1))
    g, _ = common.grad_stack(apply, params, b + a * diff, target)  # (c, N, [K,] ...)
    attr = (diff[:, :, None] if g.ndim == diff.ndim + 1 else diff) * g
    c = idx.shape[0]
    ends = common.values_stack(apply, params, jnp.concatenate([b, xn]), target)  # (2c, N[, K]): F(b_s), F(x_s)
    return common.weighted_sum(mask, attr), common.weighted_sum(mask, ends[:c]), common.weighted_sum(mask, ends[c:])


_chunk = jax.jit(expected_gradients_chunk, static_argnums=0, static_argnames="value_range")


def _result(sums: Any, n_samples: int, method: str, target_name: str) -> Attribution:
    s_attr, s_fb, s_fx = (jnp.asarray(s) for s in sums)
    values = s_attr / n_samples
    delta = values.reshape((*s_fx.shape, -1)).sum(-1) - (s_fx - s_fb) / n_samples
    steps = jnp.full((values.shape[0],), n_samples, jnp.int32)
    return Attribution(values, method, target_name, convergence_delta=delta, steps=steps)


def _pure(method: str, n_samples_default: int, doc: str) -> Callable[..., Attribution]:
    """The pure core of ``method``: every draw in one call, ``n_samples`` defaulting to ``n_samples_default``."""

    def core(
        apply: Callable,
        params: Any,
        x: Float[Array, " n *features"],
        target: BoundTarget,
        *,
        references: Float[Array, " m *features"],
        key: jax.Array,
        n_samples: int = n_samples_default,
        noise_level: float | Float[Array, " "] = 0.0,
        value_range: tuple[float, float] | None = None,
        row_ids: Int[Array, " n"] | None = None,
    ) -> Attribution:
        row_ids = jnp.arange(x.shape[0]) if row_ids is None else row_ids
        draws, weights = jnp.arange(n_samples), jnp.ones((n_samples,), x.dtype)
        sums = expected_gradients_chunk(
            apply, params, x, target, row_ids, draws, weights,
            references=references, key=key, noise_level=noise_level, value_range=value_range,
        )  # fmt: skip
        return _result(sums, n_samples, method, target.name)

    core.__name__ = core.__qualname__ = f"{method}_core"
    core.__doc__ = doc
    return core


expected_gradients_core = _pure(
    "expected_gradients",
    50,
    """Pure Expected Gradients with every draw in one call: values, ``convergence_delta``, ``steps = n_samples``.

    ``value_range`` is the model's declared ``input_spec.value_range`` (σ's scale; ``None``:
    each row's ``max - min``). ``row_ids`` (default ``arange(N)``) name each row's random
    stream, so a row gets the same draws in any batch it is part of.
    """,
)
gradient_shap_core = _pure(
    "gradient_shap",
    5,
    """Pure GradientSHAP: :func:`expected_gradients_core` with Captum's ``n_samples=5``, named ``"gradient_shap"``.""",
)


def _estimator(method: str, n_samples_default: int, doc: str) -> Callable[..., Attribution]:
    """The public method ``method``: the chunked estimator with ``n_samples`` defaulting to ``n_samples_default``.

    One signature for :func:`expected_gradients` and :func:`gradient_shap`; the registry reads
    their options and defaults from it.
    """

    def fn(
        model: Model | Any,
        x: Batch,
        *,
        references: Shaped[ArrayLike, " m ..."],
        key: jax.Array | None,
        target: Any = None,
        labels: Any = None,
        n_samples: int = n_samples_default,
        noise_level: float = 0.0,
        memory_budget: int | None = None,
        show_progress: bool = False,
    ) -> Attribution:
        n_samples = check_int("n_samples", n_samples)
        noise_level = check_float("noise_level", noise_level)
        key = check_key(key, what=method)
        chunking.check_budget(memory_budget)
        m = as_model(model)
        refs = m.input_spec.validate(references, name="references", check_range=False)
        if noise_level > 0:  # σ = 0 (constant rows, no declared range) raises before anything compiles
            x = m.input_spec.validate(x)
            noise_sigma(m, np.asarray(x), noise_level)
        p = prepare(m, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
        sums = common.run_draws(
            _chunk,
            p,
            np.arange(n_samples, dtype=np.int32),
            np.arange(p.n, dtype=np.int32),
            memory_budget=memory_budget,
            show_progress=show_progress,
            references=jnp.asarray(refs, p.x.dtype),
            key=key,
            noise_level=noise_level,
            value_range=p.model.input_spec.value_range,
        )
        return _result(sums, n_samples, method, p.target.name)

    fn.__name__ = fn.__qualname__ = method
    fn.__doc__ = doc
    return fn


expected_gradients = _estimator(
    "expected_gradients",
    50,
    """Expected Gradients: IG averaged over baselines drawn from ``references`` (module docstring has the math).

    Args (others: :mod:`explain.saliency`):
      references: ``(M, *input_shape)`` reference set the baselines are drawn from (e.g. training images).
      key: PRNG key (required; ``None`` is refused with a message): same key, same result.
      n_samples: draws (baseline, α) per input (default 50).
      noise_level: Gaussian noise σ on ``x`` per draw, as a fraction of the declared value range's
        width, else of each sample's ``max - min`` (GradientSHAP; default 0: no noise).

    Returns:
      :class:`Attribution` shaped like ``x``; ``convergence_delta = Σ values - mean_s (F(x_s) - F(b_s))``,
      ``x_s`` the noisy input of draw ``s`` (``x`` itself when ``noise_level = 0``); ``steps = n_samples``.

    Raises:
      ValueError / TypeError: before compilation, also for references of the wrong shape, ``n_samples < 1``,
      ``noise_level < 0``, ``σ = 0`` with ``noise_level > 0``, a missing or malformed key.

    Example:
      >>> a = expected_gradients(m, x, references=train_x[:256], key=jax.random.key(0), target=y)
    """,
)
gradient_shap = _estimator(
    "gradient_shap",
    5,
    """GradientSHAP with Captum's defaults (``n_samples=5``, no noise); arguments as :func:`expected_gradients`.""",
)
