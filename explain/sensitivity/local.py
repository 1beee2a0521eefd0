"""Local feature sensitivity: ∂target/∂xₖ, gradient × input and Integrated Gradients per row.

For one row ``x`` and a scalar target ``t`` (class logit or probability,
loss against labels, regression output; see :mod:`explain.targets`):

* gradient ``∂t/∂xₖ``: the first-order change of ``t`` per unit of feature ``k``;
* gradient × input ``xₖ · ∂t/∂xₖ``: for a linear model ``Σₖ xₖ ∂t/∂xₖ = t(x) - t(0)``
  exactly (Shrikumar et al. 2016);
* IG ``(xₖ - x'ₖ) ∫₀¹ ∂t(x' + α(x - x'))/∂xₖ dα``, summing to ``t(x) - t(x')``
  (Sundararajan et al. 2017), computed by :func:`explain.saliency.integrated.integrated_gradients`.

All rows go through one backward pass per chunk of rows (``batch_size``).

References:
  Shrikumar, Greenside, Shcherbina, Kundaje. Not Just a Black Box. arXiv:1605.01713, 2016.
  Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from explain import chunking, gradients
from explain.model import Model
from explain.saliency import _common as checks
from explain.sensitivity.data import check_tabular, feature_names
from explain.sensitivity.result import LocalSensitivity
from explain.targets import TargetFn

Method = Literal["grad", "gxi", "ig"]
METHODS: tuple[str, ...] = ("grad", "gxi", "ig")
DESCRIPTIONS = {
    "grad": "∂target/∂x_k",
    "gxi": "x_k · ∂target/∂x_k",
    "ig": "integrated gradients",
    "permutation": "permutation importance",
}
IgBaseline = Literal["zero", "mean"]
DEFAULT_BATCH = 16384


def check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    """Validates method names (a name or a sequence of names) before any compilation."""
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise ValueError(f"expected at least one method of {list(METHODS)}, got none")
    for m in methods:
        checks.check_choice("method", m, METHODS)
    return tuple(dict.fromkeys(methods))


def resolve_target(model: Model, x: jax.Array, target: Any, labels: Any) -> tuple[TargetFn, Any, str]:
    """``(fn, aux, name)`` for ``target``, resolved before compilation (bad labels raise here).

    A predicted-class target is frozen to the class predicted at ``x``, so a
    shuffled feature or an integration path explains the same class.
    """
    r = checks.resolve(model, x, target, labels, allow_all=False)
    return r.fn, r.aux, r.name


def per_row_aux(aux: Any, n: int) -> bool:
    """Whether ``aux`` holds one entry per row (labels, class indices) and must be chunked with them."""
    return aux is not None and jnp.ndim(aux) >= 1 and jnp.shape(aux)[0] == n


def map_rows(fn: Callable, x: jax.Array, aux: Any, *, batch: int) -> Any:
    """``fn(x_chunk, aux_chunk)`` over row chunks (aux chunked only when it is per row)."""
    if per_row_aux(aux, x.shape[0]):
        return chunking.map_batches(fn, x, aux, batch=batch)
    return chunking.map_batches(lambda xb: fn(xb, aux), x, batch=batch)


@functools.cache
def _compiled_grad(apply: Callable, target_fn: TargetFn):
    def run(params, x, aux):
        t, g, _ = gradients.target_and_grad(apply, target_fn, params, x, aux)
        return t, g

    return jax.jit(run)


def row_gradients(model: Model, x: jax.Array, fn: TargetFn, aux: Any, *, batch: int) -> tuple[jax.Array, jax.Array]:
    """``(t (N,), ∂t/∂x (N, F))``: one backward pass per chunk of ``batch`` rows."""
    run = _compiled_grad(model.apply, fn)
    return map_rows(lambda xb, ab: run(model.params, xb, ab), x, aux, batch=batch)


def ig_baseline_array(x: jax.Array, baseline: IgBaseline | Any) -> Any:
    """``"mean"``: the feature means of ``x`` (F,); ``"zero"`` or an array pass through to IG."""
    if isinstance(baseline, str) and baseline == "mean":
        return jnp.mean(x, axis=0)
    return baseline


def describe_baseline(baseline: Any) -> Any:
    return baseline if isinstance(baseline, str) else np.asarray(baseline).tolist()


def attributions(
    model: Model,
    x: jax.Array,
    methods: tuple[str, ...],
    *,
    target: Any,
    labels: Any,
    ig_baseline: IgBaseline | Any,
    ig_steps: int,
    batch: int,
) -> tuple[dict[str, jax.Array], jax.Array, str]:
    """Signed per-row attributions ``{method: (N, F)}``, target values ``(N,)`` and the target's name.

    ``grad`` and ``gxi`` share one backward pass; ``ig`` adds ``ig_steps`` passes.
    """
    fn, aux, name = resolve_target(model, x, target, labels)
    out: dict[str, jax.Array] = {}
    base = ig_baseline_array(x, ig_baseline)
    if "ig" in methods:
        from explain.saliency.integrated import integrated_gradients

        ig = integrated_gradients(model, x, target=target, labels=labels, baseline=base, steps=ig_steps)
    t, g = row_gradients(model, x, fn, aux, batch=batch)
    for m in methods:
        if m == "grad":
            out[m] = g
        elif m == "gxi":
            out[m] = g * x
        else:
            out[m] = ig.values
    return out, t, name


def local_sensitivity(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    methods: Sequence[Method] | Method = METHODS,
    names: Sequence[str] | None = None,
    ig_baseline: IgBaseline | Any = "mean",
    ig_steps: int = 50,
    batch_size: int = DEFAULT_BATCH,
) -> LocalSensitivity:
    """Per-row sensitivities of a target to each feature, ranked by magnitude with sign kept.

    Args:
      model: a tabular :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, F)`` rows (``(1, F)`` for one row), or a DataFrame matched by column name.
      target: see :mod:`explain.targets` (default: predicted logit, or output 0 for regression).
      labels: ``(N,)`` labels for ``target="loss"``.
      methods: any of ``"grad"``, ``"gxi"``, ``"ig"``.
      names: column names of an array ``x``, matched to the model's feature names.
      ig_baseline: ``"mean"`` (feature means of ``x``; default), ``"zero"``, or an ``(F,)`` / ``(N, F)`` array.
      ig_steps: IG quadrature points (Gauss–Legendre).
      batch_size: rows per compiled call.

    Returns:
      :class:`~explain.sensitivity.result.LocalSensitivity`: ``values[method]`` ``(N, F)``.

    Raises:
      ValueError / TypeError: before compilation (see :func:`~explain.sensitivity.data.check_tabular`).

    Example:
      >>> s = local_sensitivity(m, x[:3], methods=("grad", "gxi"))
      >>> s.ranked(0, "grad")[:3]
    """
    methods = check_methods(methods)
    ig_steps = checks.check_int("ig_steps", ig_steps)
    batch_size = checks.check_int("batch_size", batch_size)
    model, x = check_tabular(model, x, names=names)
    values, t, name = attributions(
        model, x, methods, target=target, labels=labels, ig_baseline=ig_baseline, ig_steps=ig_steps, batch=batch_size
    )
    settings = {
        "model": model.name,
        "target": name,
        "methods": list(methods),
        "n_rows": int(x.shape[0]),
        "ig_baseline": describe_baseline(ig_baseline) if "ig" in methods else None,
        "ig_steps": ig_steps if "ig" in methods else None,
    }
    return LocalSensitivity(
        feature_names=feature_names(model),
        values={m: np.asarray(v) for m, v in values.items()},
        target_values=np.asarray(t),
        settings=settings,
    )
