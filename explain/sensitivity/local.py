"""Local feature sensitivity per row: the vanilla gradient, gradient × input and Integrated Gradients.

For one row ``x`` and a scalar target ``t`` (class logit or probability,
loss against labels, regression output; see :mod:`explain.targets`):

* ``"vanilla_gradient"`` ``∂t/∂xₖ``: the first-order change of ``t`` per unit of feature ``k``;
* ``"gradient_x_input"`` ``xₖ · ∂t/∂xₖ``: for a linear model ``Σₖ xₖ ∂t/∂xₖ = t(x) - t(0)``
  exactly (Shrikumar et al. 2016);
* ``"integrated_gradients"`` ``(xₖ - x'ₖ) ∫₀¹ ∂t(x' + α(x - x'))/∂xₖ dα``, summing to
  ``t(x) - t(x')`` (Sundararajan et al. 2017), with the building blocks of
  :mod:`explain.saliency.integrated` (:func:`~explain.saliency.integrated.path_chunk`,
  Gauss–Legendre :func:`~explain.saliency.integrated.quadrature`). The ``baseline``
  ``x'`` comes from outside the rows explained: by default the feature means of
  ``references`` (e.g. the training split). Taking the means of ``x`` itself would
  make one row's IG identically 0 and a row's IG depend on the other rows of its batch.

The first two share one backward pass per chunk of rows; Integrated Gradients chunks
rows × steps (:mod:`explain.chunking`), results landing in host arrays.

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
from jaxtyping import Array, Float

from explain import checks, chunking, gradients
from explain.gradients import Prepared, target_and_grad
from explain.model import Model
from explain.saliency import integrated
from explain.sensitivity.data import check_references, check_rows_for_statistics, check_tabular, feature_names
from explain.sensitivity.result import LocalSensitivity
from explain.targets import BoundTarget

METHODS: tuple[str, ...] = ("vanilla_gradient", "gradient_x_input", "integrated_gradients")
DESCRIPTIONS = {
    "vanilla_gradient": "∂target/∂x_k",
    "gradient_x_input": "x_k · ∂target/∂x_k",
    "integrated_gradients": "integrated gradients",
    "permutation_importance": "permutation importance",
}
BaselineKind = Literal["mean", "zero"]
BASELINES: tuple[str, ...] = ("mean", "zero")
RULE = "gauss_legendre"
# Rows: (N, F) array-like or a pandas DataFrame whose columns are matched to the model's features by name.
Rows = Any
NO_REFERENCES_MSG = (
    "baseline='mean' is the feature means of a reference set, and no references were given: pass references= "
    "(training rows (R, F) or their feature means (F,)), or baseline='zero' or an (F,) baseline array"
)


def check_methods(methods: Sequence[str] | str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """Method names (a name or a sequence of names) without repeats, checked before any compilation."""
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods and not allow_empty:
        raise ValueError(f"expected at least one method of {list(METHODS)}, got none")
    for m in methods:
        checks.check_choice("method", m, METHODS)
    return tuple(dict.fromkeys(methods))


def check_baseline(
    model: Model, x: np.ndarray, baseline: BaselineKind | Any, references: Any
) -> tuple[np.ndarray, Any]:
    """The IG baseline (host, dtype of ``x``) and its description for the settings.

    ``"mean"``: the feature means ``(F,)`` of ``references`` (required); ``"zero"``; or an ``(F,)`` / ``(N, F)`` array.
    """
    f = x.shape[1]
    if isinstance(baseline, str):
        checks.check_choice("baseline", baseline, BASELINES)
        if baseline == "zero":
            return np.zeros((f,), x.dtype), "zero"
        if references is None:
            one = " (with one row, IG against its own mean would be identically 0)" if x.shape[0] == 1 else ""
            raise ValueError(NO_REFERENCES_MSG + one)
        means = check_references(model, references)
        return means.astype(x.dtype), {"mean of references": means.tolist()}
    if references is not None:
        raise ValueError("got both a baseline array and references; pass the baseline once")
    arr = checks.check_finite_array("baseline", baseline)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"expected a numeric baseline array, got dtype {arr.dtype}")
    if tuple(arr.shape) not in ((f,), tuple(x.shape)):
        raise ValueError(f"expected baseline of shape ({f},) or {tuple(x.shape)} (like x), got {arr.shape}")
    return arr.astype(x.dtype), arr.tolist()


def check_inputs(
    model: Model | Any,
    x: Rows,
    *,
    names: Sequence[str] | None,
    memory_budget: Any,
    methods: tuple[str, ...] = (),
    baseline: Any = "mean",
    references: Any = None,
    steps: Any = 50,
    statistics: str | None = None,
    top_k: int | None = None,
) -> tuple[Model, np.ndarray, np.ndarray | None, np.ndarray | None, Any, int | None]:
    """Every check of a sensitivity function's rows and options, before anything compiles.

    Returns ``(model, x (N, F), σ, baseline, its description, steps)``: ``σ (F,)`` and ``N >= 2``
    (:func:`~explain.sensitivity.data.check_rows_for_statistics`) when ``statistics`` names what
    needs them, the baseline and steps when ``methods`` has ``"integrated_gradients"``, else ``None``.
    ``top_k`` (a global ranking's) must not exceed the number of features.
    """
    _, steps = integrated.check_rule(RULE, steps)
    chunking.check_budget(memory_budget)
    model, x = check_tabular(model, x, names=names)
    if top_k is not None and top_k > x.shape[1]:
        raise ValueError(f"expected top_k <= {x.shape[1]} (the number of features), got {top_k}")
    sigma = None if statistics is None else check_rows_for_statistics(x, model, what=statistics)
    if "integrated_gradients" not in methods:
        return model, x, sigma, None, None, None
    return model, x, sigma, *check_baseline(model, x, baseline, references), steps


# ----------------------------------------------------------------------------- pure cores


def gradient_core(
    apply: Callable, params: Any, x: Float[Array, " n f"], target: BoundTarget
) -> tuple[Float[Array, " n"], Float[Array, " n f"]]:
    """Pure: ``(t (N,), ∂t/∂x (N, F))``, one backward pass; gradient × input is ``x * ∂t/∂x``."""
    t, g, _ = target_and_grad(apply, params, x, target)
    return t, g


_gradient = jax.jit(gradient_core, static_argnums=0)
_path_chunk = jax.jit(integrated.path_chunk, static_argnums=0)


# ----------------------------------------------------------------------------- chunked runs


def attributions(
    p: Prepared,
    methods: tuple[str, ...],
    *,
    baseline: np.ndarray | None,
    steps: int,
    memory_budget: int | None,
    show_progress: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Signed per-row attributions ``{method: (N, F)}`` and target values ``(N,)`` of a prepared batch, host arrays.

    ``baseline`` (``(F,)`` or ``(N, F)``, from :func:`check_baseline`) is needed only for
    ``"integrated_gradients"``. No validation: the caller prepared ``p`` and checked the options.
    """
    apply, params = p.model.apply, p.model.params
    rows = chunking.rows_per_chunk(p.model, memory_budget=memory_budget, dtype=p.x.dtype)
    t, g = chunking.map_rows(
        functools.partial(_gradient, apply, params), p.x, p.target, batch=rows, show_progress=show_progress,
        desc="gradients",
    )  # fmt: skip
    out: dict[str, np.ndarray] = {}
    for m in methods:
        if m == "vanilla_gradient":
            out[m] = g
        elif m == "gradient_x_input":
            out[m] = g * np.asarray(p.x)
        else:
            alphas, weights = integrated.quadrature(RULE, steps)
            nodes = np.stack([alphas, weights], axis=1).astype(p.x.dtype)  # host: a new step count compiles nothing
            batch, per_call = chunking.plan(p.n, rows, steps)
            base = np.broadcast_to(baseline, p.x.shape)  # a view: each chunk is copied on its own
            out[m] = chunking.map_rows(
                functools.partial(_path_chunk, apply, params), p.x, p.target, base, batch=batch, draws=nodes,
                per_call=per_call, show_progress=show_progress, desc="integrated gradients",
            )  # fmt: skip
    return out, t


# ----------------------------------------------------------------------------- public


def local_sensitivity(
    model: Model | Any,
    x: Rows,
    *,
    target: Any = None,
    labels: Any = None,
    methods: Sequence[str] | str = METHODS,
    names: Sequence[str] | None = None,
    baseline: BaselineKind | Any = "mean",
    references: Any = None,
    steps: int = 50,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> LocalSensitivity:
    """Per-row sensitivities of a target to each feature, ranked by magnitude with sign kept.

    Args:
      model: a tabular :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, F)`` rows (``(1, F)`` for one row), or a DataFrame matched by column name.
      target: see :mod:`explain.targets` (default: predicted logit, or output 0 for regression);
        ``"all"`` is not supported.
      labels: ``(N,)`` labels for ``target="loss"``.
      methods: any of ``"vanilla_gradient"``, ``"gradient_x_input"``, ``"integrated_gradients"``.
      names: column names of an array ``x``, matched to the model's feature names.
      baseline: Integrated Gradients' baseline: ``"mean"`` (default: the feature means of
        ``references``), ``"zero"``, or an ``(F,)`` / ``(N, F)`` array.
      references: for ``baseline="mean"``: reference rows ``(R, F)`` (e.g. the training split,
        or a DataFrame) or their feature means ``(F,)``. Required when ``"integrated_gradients"``
        uses ``"mean"``.
      steps: Integrated Gradients' quadrature points (Gauss–Legendre), ``1 <= steps <= 10000``.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).
      show_progress: a progress bar for long calls.

    Returns:
      :class:`~explain.sensitivity.result.LocalSensitivity`: ``values[method]`` ``(N, F)``.

    Raises:
      ValueError / TypeError: before compilation (see :func:`~explain.sensitivity.data.check_tabular`),
      including Integrated Gradients with ``baseline="mean"`` and no ``references``.

    Example:
      >>> s = local_sensitivity(m, x[:3], references=x_train)
      >>> s.ranked(0, "integrated_gradients")[:3]
    """
    methods = check_methods(methods)
    model, x, _, base, described, steps = check_inputs(
        model, x, names=names, memory_budget=memory_budget, methods=methods, baseline=baseline,
        references=references, steps=steps,
    )  # fmt: skip
    p = gradients.prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    values, t = attributions(
        p, methods, baseline=base, steps=steps, memory_budget=memory_budget, show_progress=show_progress
    )
    settings = dict(
        model=model.name, target=p.target.name, methods=list(methods), n_rows=p.n, baseline=described, steps=steps
    )
    return LocalSensitivity(
        feature_names(model), {m: jnp.asarray(v) for m, v in values.items()}, jnp.asarray(t), settings
    )
