"""Local feature sensitivity: ∂target/∂xₖ, gradient × input and Integrated Gradients per row.

For one row ``x`` and a scalar target ``t`` (class logit or probability,
loss against labels, regression output; see :mod:`explain.targets`):

* gradient ``∂t/∂xₖ``: the first-order change of ``t`` per unit of feature ``k``;
* gradient × input ``xₖ · ∂t/∂xₖ``: for a linear model ``Σₖ xₖ ∂t/∂xₖ = t(x) - t(0)``
  exactly (Shrikumar et al. 2016);
* IG ``(xₖ - x'ₖ) ∫₀¹ ∂t(x' + α(x - x'))/∂xₖ dα``, summing to ``t(x) - t(x')``
  (Sundararajan et al. 2017), computed by :func:`explain.saliency.integrated.path_integral`.
  The baseline ``x'`` comes from outside the rows explained: by default the
  feature means of a ``reference`` set (e.g. the training split). Taking the
  means of ``x`` itself would make one row's IG identically 0 and a row's IG
  depend on the other rows of its batch.

All rows go through one backward pass per chunk of rows (``batch_size``).

References:
  Shrikumar, Greenside, Shcherbina, Kundaje. Not Just a Black Box. arXiv:1605.01713, 2016.
  Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from explain import checks, chunking, gradients
from explain import targets as targets_lib
from explain.model import Model
from explain.saliency import _common
from explain.sensitivity.data import check_reference, check_tabular, feature_names
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
NO_REFERENCE_MSG = (
    "ig_baseline='mean' is the feature means of a reference set, and no reference was given: pass reference= "
    "(training rows (R, F) or their feature means (F,)), or ig_baseline='zero' or an (F,) baseline array"
)


def check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    """Validates method names (a name or a sequence of names) before any compilation."""
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise ValueError(f"expected at least one method of {list(METHODS)}, got none")
    for m in methods:
        checks.check_choice("method", m, METHODS)
    return tuple(dict.fromkeys(methods))


def check_baseline(model: Model, x: jax.Array, baseline: IgBaseline | Any, reference: Any) -> tuple[jax.Array, Any]:
    """The IG baseline ``(F,)`` or ``(N, F)`` and its description for the settings; raises before compiling.

    ``"mean"``: the feature means of ``reference`` (required); ``"zero"``; or an
    ``(F,)`` / ``(N, F)`` array.
    """
    f = x.shape[1]
    if isinstance(baseline, str):
        checks.check_choice("ig_baseline", baseline, ("mean", "zero"))
        if baseline == "zero":
            return jnp.zeros((f,), x.dtype), "zero"
        if reference is None:
            one = " (with one row, IG against its own mean would be identically 0)" if x.shape[0] == 1 else ""
            raise ValueError(NO_REFERENCE_MSG + one)
        means = check_reference(model, reference)
        return jnp.asarray(means, x.dtype), {"mean of reference": means.tolist()}
    if reference is not None:
        raise ValueError("got both an ig_baseline array and a reference; pass the baseline once")
    arr = checks.check_finite_array("ig_baseline", baseline)
    if tuple(arr.shape) not in ((f,), tuple(x.shape)):
        raise ValueError(f"expected ig_baseline of shape ({f},) or {tuple(x.shape)} (like x), got {arr.shape}")
    return jnp.asarray(arr, x.dtype), arr.tolist()


def resolve_target(model: Model, x: jax.Array, target: Any, labels: Any) -> tuple[TargetFn, Any, str]:
    """``(fn, aux, name)`` for ``target`` over validated rows ``x``, resolved before compilation (bad labels raise here).

    A predicted-class target is frozen to the class predicted at ``x``, so a
    shuffled feature or an integration path explains the same class. ``x`` is
    not validated again: callers pass the output of :func:`check_tabular`.
    """
    if isinstance(target, str) and target == _common.ALL:
        raise ValueError("target='all' is not supported by sensitivity rankings; pass a class index, 'pred' or 'loss'")
    fn, aux, name = targets_lib.resolve(model, target, x.shape[0], labels=labels)
    r = _common.freeze_pred(_common.Resolved(model, x, fn, aux, name))
    return r.fn, r.aux, r.name


def per_row_aux(aux: Any, n: int) -> bool:
    """Whether ``aux`` holds one entry per row (labels, class indices) and must be chunked with them."""
    return aux is not None and jnp.ndim(aux) >= 1 and jnp.shape(aux)[0] == n


def map_rows(fn: Callable, x: jax.Array, aux: Any, *, batch: int) -> Any:
    """``fn(x_chunk, aux_chunk)`` over row chunks (aux chunked only when it is per row)."""
    if per_row_aux(aux, x.shape[0]):
        return chunking.map_batches(fn, x, aux, batch=batch)
    return chunking.map_batches(lambda xb: fn(xb, aux), x, batch=batch)


def row_gradients(model: Model, x: jax.Array, fn: TargetFn, aux: Any, *, batch: int) -> tuple[jax.Array, jax.Array]:
    """``(t (N,), ∂t/∂x (N, F))``: one backward pass per chunk of ``batch`` rows (the core compiled gradient)."""
    run = gradients._compiled_input_grad(model.apply, fn)
    return map_rows(lambda xb, ab: run(model.params, xb, ab)[:2], x, aux, batch=batch)


def integrated_rows(
    model: Model, x: jax.Array, fn: TargetFn, aux: Any, name: str, baseline: jax.Array, *, steps: int
) -> jax.Array:
    """IG ``(N, F)`` of validated rows against ``baseline`` ``(F,)`` or ``(N, F)`` (Gauss–Legendre, ``steps`` nodes)."""
    from explain.saliency import integrated

    r = _common.Resolved(model, x, fn, aux, name)
    rows = _common.rows_per_chunk(model, memory_budget=None, internal_batch_size=None, all_classes=False)
    base = jnp.broadcast_to(baseline, x.shape)
    values, _ = integrated.path_integral(r, base, *integrated.quadrature("gauss_legendre", steps), rows)
    return values


def attributions_impl(
    model: Model,
    x: jax.Array,
    methods: tuple[str, ...],
    fn: TargetFn,
    aux: Any,
    name: str,
    *,
    baseline: jax.Array | None,
    ig_steps: int,
    batch: int,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Signed per-row attributions ``{method: (N, F)}`` and target values ``(N,)``; no validation.

    ``x`` is validated, ``fn, aux`` resolved (and frozen) and ``baseline`` checked
    by the caller. ``grad`` and ``gxi`` share one backward pass; ``ig`` adds ``ig_steps``.
    """
    t, g = row_gradients(model, x, fn, aux, batch=batch)
    out: dict[str, jax.Array] = {}
    for m in methods:
        if m == "grad":
            out[m] = g
        elif m == "gxi":
            out[m] = g * x
        else:
            out[m] = integrated_rows(model, x, fn, aux, name, baseline, steps=ig_steps)
    return out, t


def local_sensitivity(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    methods: Sequence[Method] | Method = METHODS,
    names: Sequence[str] | None = None,
    ig_baseline: IgBaseline | Any = "mean",
    reference: Any = None,
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
      ig_baseline: ``"mean"`` (default: the feature means of ``reference``), ``"zero"``, or an
        ``(F,)`` / ``(N, F)`` array.
      reference: for ``ig_baseline="mean"``: reference rows ``(R, F)`` (e.g. the training split,
        or a DataFrame) or their feature means ``(F,)``. Required when ``"ig"`` uses ``"mean"``.
      ig_steps: IG quadrature points (Gauss–Legendre).
      batch_size: rows per compiled call.

    Returns:
      :class:`~explain.sensitivity.result.LocalSensitivity`: ``values[method]`` ``(N, F)``.

    Raises:
      ValueError / TypeError: before compilation (see :func:`~explain.sensitivity.data.check_tabular`),
      including IG with ``ig_baseline="mean"`` and no ``reference``.

    Example:
      >>> s = local_sensitivity(m, x[:3], reference=x_train)
      >>> s.ranked(0, "ig")[:3]
    """
    methods = check_methods(methods)
    ig_steps = checks.check_int("ig_steps", ig_steps)
    batch_size = checks.check_int("batch_size", batch_size)
    model, x = check_tabular(model, x, names=names)
    base, described = check_baseline(model, x, ig_baseline, reference) if "ig" in methods else (None, None)
    fn, aux, name = resolve_target(model, x, target, labels)
    values, t = attributions_impl(model, x, methods, fn, aux, name, baseline=base, ig_steps=ig_steps, batch=batch_size)
    settings = {
        "model": model.name,
        "target": name,
        "methods": list(methods),
        "n_rows": int(x.shape[0]),
        "ig_baseline": described,
        "ig_steps": ig_steps if "ig" in methods else None,
    }
    return LocalSensitivity(
        feature_names=feature_names(model),
        values={m: np.asarray(v) for m, v in values.items()},
        target_values=np.asarray(t),
        settings=settings,
    )
