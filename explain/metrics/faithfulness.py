"""Faithfulness: does removing what a map calls relevant change the model's output the way the map says?

* :func:`deletion` / :func:`insertion`: the target's score as the most relevant pixels
  (or ``patch × patch`` blocks) are replaced by a baseline, or put back into it, in ``S``
  equal steps; the area under the curve (trapezoid rule over the removed fraction in
  ``[0, 1]``) summarises it. A faithful map gives a low deletion AUC and a high insertion AUC.
* :func:`road`: the same curve at given fractions, but removed pixels are filled by
  noisy linear imputation (:func:`~explain.metrics.imputation.noisy_linear_imputation`), so the removal itself does
  not leave a tell-tale shape for the model to react to.
* :func:`faithfulness_correlation`: Pearson correlation, over random subsets of pixels,
  between the attributions' sum over a subset and the output drop when that subset is
  set to the baseline.
* :func:`infidelity`: Captum's (Yeh et al.'s) expected squared error between the
  attributions' prediction of an output change and the change itself, under Gaussian
  input perturbations.

Scores. By default curves score the predicted class's probability (``score="prob"``,
the convention of Petsiuk et al.: bounded, comparable across images); correlation and
infidelity score its logit (``score="logit"``), the quantity the methods explain by
default, so that sums of attributions and output changes share their units. A
predicted class is frozen at ``x``. ``score`` applies to class targets only (``None``,
``"pred"``, an int, ``(N,)`` ints); other targets (a loss, a callable) are scored as given.

Batching. Steps, fractions, subsets and perturbations are the draws of
:func:`explain.chunking.map_rows`: one compiled forward pass takes ``c`` draws of ``n``
samples within the one memory budget; each draw's value is placed in its own column, so
no device array grows with ``N`` or the number of draws. Random draws use
``fold_in(fold_in(key, draw), sample)``: results do not depend on chunking.

References:
  Petsiuk, Das, Saenko. RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC 2018.
  Samek et al. Evaluating the Visualization of What a Deep Neural Network Has Learned. IEEE TNNLS 2017.
  Rong, Leemann, Borisov, Kasneci, Kasneci. A Consistent and Efficient Evaluation Strategy for
  Attribution Methods (ROAD). ICML 2022.
  Bhatt, Weller, Moura. Evaluating and Aggregating Feature-based Model Explanations. IJCAI 2020.
  Yeh, Hsieh, Suggala, Inouye, Ravikumar. On the (In)fidelity and Sensitivity of Explanations. NeurIPS 2019.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_choice, check_float, check_int, check_key
from explain.metrics import _common as common
from explain.metrics.imputation import noisy_linear_imputation
from explain.metrics.relevance import Reduce, check_reduce, ranks, reduce_channels, unit_ids, unit_relevance
from explain.model import Model, as_model
from explain.results import Result
from explain.targets import BoundTarget, Score

Order = Literal["morf", "lerf"]
ORDERS: tuple[str, ...] = ("morf", "lerf")
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Curve(Result):
    """A perturbation curve per sample and its area.

    Attributes:
      fractions: ``(S,)`` fraction of pixels (or patches) removed at each point, increasing.
      scores: ``(N, S)`` the target's score at each point.
      auc: ``(N,)`` trapezoid-rule area under ``scores`` over ``fractions``.
      kind: ``"deletion"``, ``"insertion"``, ``"road_morf"`` or ``"road_lerf"``.
      target_name: what was scored, e.g. ``"prob[pred]"``.
    """

    fractions: Float[Array | np.ndarray, " s"]
    scores: Float[Array | np.ndarray, " n s"]
    auc: Float[Array | np.ndarray, " n"]
    kind: str = dataclasses.field(default="", metadata=dict(static=True))
    target_name: str = dataclasses.field(default="", metadata=dict(static=True))


def _curve(kind: str, fractions: np.ndarray, scores: np.ndarray, target_name: str) -> Curve:
    auc = np.trapezoid(scores.astype(np.float64), fractions, axis=1).astype(scores.dtype)
    return Curve(jnp.asarray(fractions, scores.dtype), jnp.asarray(scores), jnp.asarray(auc), kind, target_name)


# ----------------------------------------------------------------------------- units


def _unit_relevance(attributions: Float[Array, " n *features"], *, patch: int, reduce: str) -> Float[Array, " n u"]:
    """Pure: ``R_u``, the channel-reduced relevance summed over each unit (pixel, ``patch × patch`` block, feature)."""
    shape = attributions.shape[1:]
    uid, n_units = unit_ids(shape, patch)
    return unit_relevance(
        reduce_channels(attributions, image=len(shape) == 3, reduce=reduce), jnp.asarray(uid), n_units
    )


def _replace_units(
    chosen: Bool[Array, " c n u"],
    filled: Float[Array, " n *features"],
    kept: Float[Array, " n *features"],
    *,
    patch: int,
) -> Float[Array, " c n *features"]:
    """Pure: per draw, ``filled`` on every pixel (all channels) or feature of the chosen units, ``kept`` elsewhere."""
    shape = kept.shape[1:]
    uid, _ = unit_ids(shape, patch)
    pix = chosen[..., jnp.asarray(uid)]  # (c, n, *pixels)
    return jnp.where(pix[..., None] if len(shape) == 3 else pix, filled[None], kept[None])


# ----------------------------------------------------------------------------- deletion and insertion


def deletion_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    attributions: Float[Array, " n *features"],
    baseline: Float[Array, " n *features"],
    draws: tuple[Int[Array, " c"], Int[Array, " c"]],
    weights: Float[Array, " c"],
    *,
    patch: int,
    reduce: str,
    insert: bool | Bool[Array, " "],
    n_columns: int,
) -> Float[Array, " n s"]:
    """Pure: scores at ``c`` steps ``(column, units removed)``, placed in their columns ``(N, n_columns)``.

    Units are ranked by relevance (ties in order of position); step ``k`` replaces the
    top ``k`` by ``baseline`` (deletion) or starts from ``baseline`` and puts them back (insertion).
    ``insert`` is traced: deletion and insertion share one compiled function.
    """
    columns, counts = draws
    r = _unit_relevance(attributions, patch=patch, reduce=reduce)
    chosen = ranks(r)[None] < counts[:, None, None]  # (c, n, U)
    pts = _replace_units(chosen, jnp.where(insert, x, baseline), jnp.where(insert, baseline, x), patch=patch)
    return common.scatter_columns(common.stacked_scores(apply, params, pts, target), columns, weights, n_columns)


_deletion_chunk = jax.jit(deletion_chunk, static_argnums=0, static_argnames=("patch", "reduce", "n_columns"))


def _removal_metric(kind: str, doc: str) -> Callable[..., Curve]:
    """The public :func:`deletion` or :func:`insertion` (``kind``): one signature and one body for both,
    which differ only in :func:`deletion_chunk`'s ``insert``."""

    def fn(
        model: Model | Any,
        x: Batch,
        attributions: Batch,
        *,
        target: Any = None,
        labels: Any = None,
        baseline: str | float | Batch = "zero",
        steps: int = 20,
        patch: int = 1,
        reduce: Reduce = "sum_abs",
        score: Score | None = None,
        memory_budget: int | None = None,
        show_progress: bool = False,
    ) -> Curve:
        m = as_model(model)
        check_reduce(reduce)
        steps = check_int("steps", steps)
        _, n_units = unit_ids(tuple(m.input_spec.shape), patch)
        if steps > n_units:
            raise ValueError(f"expected steps <= {n_units} (the pixels, patches or features to remove), got {steps}")
        x = m.input_spec.validate(x, check_range=False)  # prepare (in bind) warns about the range, once
        a = common.check_attributions(attributions, x)
        b = common.check_baseline(baseline, x)
        p = common.bind(m, x, target=target, labels=labels, score=score, default="prob", memory_budget=memory_budget)
        counts = np.rint(np.arange(steps + 1) * n_units / steps).astype(np.int32)
        scores = common.map_draws(
            _deletion_chunk, p, a, b, draws=(np.arange(steps + 1, dtype=np.int32), counts),
            memory_budget=memory_budget, show_progress=show_progress, desc=kind,
            patch=patch, reduce=reduce, insert=kind == "insertion", n_columns=steps + 1,
        )  # fmt: skip
        return _curve(kind, counts / n_units, scores, p.target.name)

    fn.__name__ = fn.__qualname__ = kind
    fn.__doc__ = doc
    return fn


deletion = _removal_metric(
    "deletion",
    """Deletion curve: the score as the most relevant pixels are replaced by ``baseline``, most relevant first.

    With units (pixels, or ``patch × patch`` blocks) ranked by relevance ``R_u`` (module
    :mod:`explain.metrics.relevance`; ties in order of position) and ``k_s = round(s · U / S)``,
    point ``s`` scores ``x`` with its top ``k_s`` units set to the baseline; ``AUC = ∫₀¹ score``
    by the trapezoid rule. Lower is more faithful.

    Args:
      model: a :class:`~explain.model.Model` or a bundle.
      x: ``(N, *input_shape)``.
      attributions: shaped like ``x`` (an array or an :class:`~explain.saliency.Attribution`).
      target, labels: what is scored (:mod:`explain.targets`); default the predicted class, frozen at ``x``.
      baseline: ``"zero"``, a number, one sample ``(*input_shape)`` or ``(N, *input_shape)``.
      steps: ``S``, the number of equal steps from nothing to everything removed.
      patch: block side for images (relevance summed per block); 1 for tabular inputs.
      reduce: ``"sum_abs"`` or ``"sum"`` over channels (:func:`~explain.metrics.pixel_relevance`).
      score: ``"prob"`` (default for class targets), ``"logit"`` or ``"log_prob"``.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).

    Returns:
      :class:`Curve` with ``fractions (S+1,)``, ``scores (N, S+1)``, ``auc (N,)``.

    Raises:
      ValueError / TypeError: before any compilation: attributions not shaped like ``x``, a bad
      baseline, ``steps`` above the number of units, ``patch`` on tabular inputs, an unknown
      ``reduce`` or ``score``, ``score`` with a non-class target.

    Example:
      >>> a = explain.integrated_gradients(m, x)
      >>> deletion(m, x, a, steps=20).auc.mean()

    References:
      Petsiuk et al. 2018 (RISE); Samek et al. 2017 (module docstring).
    """,
)
insertion = _removal_metric(
    "insertion",
    """Insertion curve: start from ``baseline`` and put back ``x``'s most relevant pixels first.

    Point ``s`` scores the baseline with the top ``k_s`` units of ``x`` inserted (ranking and
    steps as :func:`deletion`). Higher is more faithful. Arguments, returns and errors as
    :func:`deletion` (a blurred copy of ``x`` as ``baseline`` gives Petsiuk et al.'s variant).
    """,
)


# ----------------------------------------------------------------------------- ROAD


def road_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n h w c"],
    target: BoundTarget,
    attributions: Float[Array, " n h w c"],
    ids: Int[Array, " n"],
    draws: tuple[Int[Array, " c"], Int[Array, " c"]],
    weights: Float[Array, " c"],
    *,
    key: Any,
    noise_std: float | Float[Array, " "],
    reduce: str,
    lerf: bool | Bool[Array, " "],
    n_columns: int,
    iterations: int | None = None,
) -> Float[Array, " n s"]:
    """Pure: scores of ``x`` with its ``counts`` most (least, ``lerf``, traced) relevant pixels imputed, per column."""
    columns, counts = draws
    c, (n, h, w, ch) = columns.shape[0], x.shape
    r = reduce_channels(attributions, image=True, reduce=reduce).reshape(n, h * w)
    removed = (ranks(jnp.where(lerf, -r, r))[None] < counts[:, None, None]).reshape(c * n, h, w)
    keys = common.draw_keys(key, ids, columns).reshape(c * n)
    tiled = jnp.broadcast_to(x[None], (c, n, h, w, ch)).reshape(c * n, h, w, ch)
    pts = noisy_linear_imputation(tiled, removed, keys, noise_std=noise_std, iterations=iterations)
    t = common.stacked_scores(apply, params, pts.reshape(c, n, h, w, ch), target)
    return common.scatter_columns(t, columns, weights, n_columns)


_road_chunk = jax.jit(road_chunk, static_argnums=0, static_argnames=("reduce", "n_columns", "iterations"))


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    try:
        values = [check_float("each fraction", f, maximum=1.0) for f in fractions]
    except TypeError as e:
        raise TypeError(f"expected fractions as a sequence of numbers in [0, 1], got {fractions!r}") from e
    arr = np.asarray(values, np.float64)
    if arr.size == 0 or np.any(np.diff(arr) <= 0):
        raise ValueError(f"expected a non-empty increasing sequence of fractions in [0, 1], got {fractions!r}")
    return arr


def road(
    model: Model | Any,
    x: Batch,
    attributions: Batch,
    *,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    order: Order = "morf",
    noise_std: float = 0.01,
    reduce: Reduce = "sum_abs",
    score: Score | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Curve:
    """ROAD (RemOve And Debias): the score with a fraction of pixels removed by noisy linear imputation.

    At each fraction ``q``, the ``round(q · H · W)`` most relevant pixels (``order="morf"``;
    least relevant with ``"lerf"``) are replaced by :func:`noisy_linear_imputation`: each
    removed pixel takes the weighted mean of its 8 neighbours (direct 1/6, diagonal 1/12,
    all removed pixels solved jointly) plus ``N(0, noise_std²)`` noise. Unlike a flat baseline,
    the filled region carries no shape of its own, so the score reflects the information
    removed rather than the removal's outline. MoRF: lower is more faithful; LeRF: higher.
    ``auc`` is the trapezoid area over the given fractions (not rescaled).

    Args:
      key: PRNG key for the imputation noise (``fold_in(fold_in(key, fraction index), sample)``).
      fractions: increasing values in ``[0, 1]`` (default 0.1, ..., 0.9, as Rong et al.).
      order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
      noise_std: the noise's standard deviation, in input units (Rong et al.: 0.01).
      (others as :func:`deletion`; images only, pixel granularity)

    Returns:
      :class:`Curve` with ``fractions (F,)``, ``scores (N, F)``, ``auc (N,)``.

    Raises:
      ValueError / TypeError: as :func:`deletion`, and for non-image inputs, a missing key,
      fractions outside ``[0, 1]`` or not increasing, an unknown ``order``.

    References:
      Rong et al. ICML 2022 (module docstring).
    """
    m = as_model(model)
    h, w, _ = common.check_image(m, what="road")
    key = check_key(key, what="road")
    check_choice("order", order, ORDERS)
    check_reduce(reduce)
    noise_std = check_float("noise_std", noise_std)
    frac = _check_fractions(fractions)
    x = m.input_spec.validate(x, check_range=False)  # prepare (in bind) warns about the range, once
    a = common.check_attributions(attributions, x)
    p = common.bind(m, x, target=target, labels=labels, score=score, default="prob", memory_budget=memory_budget)
    counts = np.rint(frac * h * w).astype(np.int32)
    scores = common.map_draws(
        _road_chunk, p, a, np.arange(p.n, dtype=np.int32), draws=(np.arange(len(frac), dtype=np.int32), counts),
        memory_budget=memory_budget, show_progress=show_progress, desc="road",
        key=key, noise_std=noise_std, reduce=reduce, lerf=order == "lerf", n_columns=len(frac),
    )  # fmt: skip
    return _curve(f"road_{order}", counts / (h * w), scores, p.target.name)


# ----------------------------------------------------------------------------- faithfulness correlation
#
# The model's half (the output drop per random subset) does not depend on the map: `subset_drops` computes it
# once, and `faithfulness_correlation(..., drops=...)` reuses it for every map of the same inputs and key.


def _random_subsets(key: Any, ids: Int[Array, " n"], subsets: Int[Array, " c"], n_units: int, size: int) -> jax.Array:
    """Pure: ``(c, n, size)`` units drawn per (subset, sample) from ``fold_in(fold_in(key, s), i)``: the ``size``
    largest of ``U`` uniform draws (ties in order of position)."""
    keys = common.draw_keys(key, ids, subsets)  # (c, n)
    u = jax.vmap(jax.vmap(lambda k: jax.random.uniform(k, (n_units,))))(keys)
    return jnp.argsort(-u, axis=-1, stable=True)[..., :size].astype(jnp.int32)


def _as_mask(units: Int[Array, " c n k"], n_units: int) -> Bool[Array, " c n u"]:
    c, n, k = units.shape
    flat = units.reshape(c * n, k)
    return jnp.zeros((c * n, n_units), bool).at[jnp.arange(c * n)[:, None], flat].set(True).reshape(c, n, n_units)


def drops_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    baseline: Float[Array, " n *features"],
    fx: Float[Array, " n"],
    ids: Int[Array, " n"],
    subsets: Int[Array, " c"],
    weights: Float[Array, " c"],
    *,
    key: Any,
    size: int,
    patch: int,
    n_columns: int,
) -> tuple[Float[Array, " n s"], Float[Array, " n s k"]]:
    """Pure: ``F(x) - F(x with S := baseline)`` per random subset ``S`` of ``size`` units, and ``S``'s units,
    each in its column (the units as floats: exact below 2²⁴)."""
    _, n_units = unit_ids(x.shape[1:], patch)
    units = _random_subsets(key, ids, subsets, n_units, size)
    pts = _replace_units(_as_mask(units, n_units), baseline, x, patch=patch)
    drop = fx[None] - common.stacked_scores(apply, params, pts, target)
    return (
        common.scatter_columns(drop, subsets, weights, n_columns),
        common.scatter_columns(units.astype(jnp.float32), subsets, weights, n_columns),
    )


_drops_chunk = jax.jit(drops_chunk, static_argnums=0, static_argnames=("size", "patch", "n_columns"))
_unit_relevance_jit = jax.jit(_unit_relevance, static_argnames=("patch", "reduce"))


class SubsetDrops(NamedTuple):
    """The model's half of :func:`faithfulness_correlation`, shared by every map of the same inputs.

    Attributes:
      drops: ``(N, S)`` ``F(x) - F(x_{S := baseline})`` per random subset.
      units: ``(N, S, k)`` the ``k`` units (pixels, patches or features, flat index) of each subset.
    """

    drops: Float[np.ndarray, " n s"]
    units: Int[np.ndarray, " n s k"]


def pearson(a: Float[Array, " n s"], b: Float[Array, " n s"]) -> Float[Array, " n"]:
    """Row-wise Pearson correlation; ``NaN`` where either row is constant (the correlation is undefined)."""
    a = np.asarray(a, np.float64) - np.mean(a, axis=1, keepdims=True)
    b = np.asarray(b, np.float64) - np.mean(b, axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / den, np.nan)


def _subset_size(model: Model, subset_fraction: float, patch: int) -> int:
    subset_fraction = check_float("subset_fraction", subset_fraction, maximum=1.0)
    _, n_units = unit_ids(tuple(model.input_spec.shape), patch)
    size = int(round(subset_fraction * n_units))
    if size < 1:
        raise ValueError(f"expected subset_fraction to pick at least one of {n_units} units, got {subset_fraction:g}")
    return size


def _check_drops(drops: Any, n: int, n_draws: int, made_by: str) -> np.ndarray:
    arr = np.asarray(drops, np.float64)
    if arr.shape != (n, n_draws):
        raise ValueError(
            f"expected drops of shape {(n, n_draws)} from {made_by} with the same settings, got {arr.shape}"
        )
    return arr


def subset_drops(
    model: Model | Any,
    x: Batch,
    *,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    n_subsets: int = 64,
    subset_fraction: float = 0.1,
    baseline: str | float | Batch = "zero",
    patch: int = 1,
    score: Score | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> SubsetDrops:
    """The model's half of :func:`faithfulness_correlation`: ``F(x) - F(x_{S := baseline})`` per random subset.

    The subsets depend on ``key``, the sample's index, ``n_subsets``, ``subset_fraction`` and
    ``patch`` only, not on any map: pass the result as ``drops=`` to score many maps of the
    same ``x`` with one set of forward passes (:func:`explain.metrics.evaluate` does).

    Returns:
      :class:`SubsetDrops`: ``(N, n_subsets)`` output drops and ``(N, n_subsets, k)`` the subsets' units, on
      the host (``N · n_subsets · k`` int32: 27 MB for 256 ``shapes`` images, 64 subsets of 410 pixels).
      Arguments as :func:`faithfulness_correlation`.
    """
    m = as_model(model)
    key = check_key(key, what="faithfulness_correlation")
    n_subsets = check_int("n_subsets", n_subsets, minimum=2)
    size = _subset_size(m, subset_fraction, patch)
    x = m.input_spec.validate(x, check_range=False)  # prepare (in bind) warns about the range, once
    b = common.check_baseline(baseline, x)
    p = common.bind(m, x, target=target, labels=labels, score=score, default="logit", memory_budget=memory_budget)
    fx = common.scores_at(p, memory_budget)
    drops, units = common.map_draws(
        _drops_chunk, p, b, fx, np.arange(p.n, dtype=np.int32), draws=np.arange(n_subsets, dtype=np.int32),
        memory_budget=memory_budget, show_progress=show_progress, desc="subsets",
        key=key, size=size, patch=patch, n_columns=n_subsets,
    )  # fmt: skip
    return SubsetDrops(drops, np.rint(units).astype(np.int32))


def faithfulness_correlation(
    model: Model | Any,
    x: Batch,
    attributions: Batch,
    *,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    n_subsets: int = 64,
    subset_fraction: float = 0.1,
    baseline: str | float | Batch = "zero",
    patch: int = 1,
    reduce: Reduce = "sum",
    score: Score | None = None,
    drops: SubsetDrops | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Float[Array, " n"]:
    """Faithfulness correlation: ``corr_S(Σ_{i∈S} a_i, F(x) - F(x_{S := baseline}))`` over random subsets ``S``.

    ``n_subsets`` subsets of ``round(subset_fraction · U)`` units (pixels, patches or
    features) are drawn per sample; the Pearson correlation of the two columns is returned.
    Higher is more faithful. Signed relevance (``reduce="sum"``) by default: the output drop
    is signed, and an attribution that sums to the drop (gradient × input of a linear model,
    zero baseline) scores exactly 1. ``NaN`` where the drops (or sums) do not vary.

    Args:
      key: PRNG key for the subsets.
      n_subsets: subsets per sample (at least 2).
      subset_fraction: the share of units in each subset, in ``(0, 1]``.
      score: default ``"logit"`` for class targets (module docstring).
      drops: :func:`subset_drops` of the same ``x``, ``key`` and settings, to skip the forward passes
        (then ``target``, ``labels``, ``baseline`` and ``score`` are those ``drops`` were made with).
      (others as :func:`deletion`)

    Returns:
      ``(N,)`` correlations in ``[-1, 1]``.

    References:
      Bhatt, Weller, Moura. IJCAI 2020.
    """
    m = as_model(model)
    key = check_key(key, what="faithfulness_correlation")
    n_subsets = check_int("n_subsets", n_subsets, minimum=2)
    check_reduce(reduce)
    size = _subset_size(m, subset_fraction, patch)
    xv = m.input_spec.validate(x, check_range=False)
    a = common.check_attributions(attributions, xv)
    if drops is None:
        drops = subset_drops(
            m, xv, key=key, target=target, labels=labels, n_subsets=n_subsets, subset_fraction=subset_fraction,
            baseline=baseline, patch=patch, score=score, memory_budget=memory_budget, show_progress=show_progress,
        )  # fmt: skip
    if not isinstance(drops, SubsetDrops):
        raise TypeError(f"expected drops from subset_drops (a SubsetDrops), got {type(drops).__name__}")
    table = _check_drops(drops.drops, len(xv), n_subsets, "subset_drops")
    if drops.units.shape != (len(xv), n_subsets, size):
        raise ValueError(f"expected subsets of {size} units from subset_drops, got units {drops.units.shape}")
    rows = common.forward_rows(m, xv.dtype, memory_budget)
    r = chunking.map_rows(functools.partial(_unit_relevance_jit, patch=patch, reduce=reduce), a, batch=rows)
    sums = np.take_along_axis(np.asarray(r, np.float64)[:, None, :], drops.units, axis=2).sum(axis=-1)  # (N, S)
    return jnp.asarray(pearson(sums, table).astype(xv.dtype))


# ----------------------------------------------------------------------------- infidelity
#
# As for the correlation: the output changes under the perturbations do not depend on the map, so
# `perturbation_drops` computes them once and `infidelity(..., drops=...)` reuses them for every map.


def _perturbations(key: Any, ids: Int[Array, " n"], draws: Int[Array, " c"], shape: tuple, dtype: Any) -> jax.Array:
    """Pure: ``(c, n, *shape)`` standard normal perturbations from ``fold_in(fold_in(key, draw), sample)``."""
    keys = common.draw_keys(key, ids, draws)  # (c, n)
    return jax.vmap(jax.vmap(lambda k: jax.random.normal(k, shape, dtype)))(keys)


def perturbation_drops_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    fx: Float[Array, " n"],
    ids: Int[Array, " n"],
    draws: Int[Array, " c"],
    weights: Float[Array, " c"],
    *,
    key: Any,
    noise_std: float | Float[Array, ""],
    n_columns: int,
) -> Float[Array, " n s"]:
    """Pure: ``Δ = F(x) - F(x - I)`` per perturbation ``I`` (``noise_std`` times the draw's normals), in its column."""
    noise = noise_std * _perturbations(key, ids, draws, x.shape[1:], x.dtype)
    delta = fx[None] - common.stacked_scores(apply, params, x[None] - noise, target)  # (c, n)
    return common.scatter_columns(delta, draws, weights, n_columns)


def infidelity_chunk(
    x: Float[Array, " n *features"],
    attributions: Float[Array, " n *features"],
    baseline: Float[Array, " n *features"],
    deltas: Float[Array, " n s"],
    ids: Int[Array, " n"],
    draws: Int[Array, " c"],
    weights: Float[Array, " c"],
    *,
    key: Any,
    noise_std: float | Float[Array, ""],
    by_inputs: bool,
) -> Float[Array, " n 4"]:
    """Pure: ``Σ_draws (p², p·Δ, Δ², (p - Δ)²)`` per sample with ``p = Iᵀa`` and ``Δ`` the draw's column of ``deltas``."""
    noise = noise_std * _perturbations(key, ids, draws, x.shape[1:], x.dtype)
    delta = jnp.take(deltas, draws, axis=1).T.astype(x.dtype)  # (c, n)
    if by_inputs:
        # Captum's multiply_by_inputs: the perturbation in units of (x - baseline), a zero denominator taken as 1.
        span = x - baseline
        noise = noise / jnp.where(span == 0, 1, span)[None]
    pred = jnp.sum((noise * attributions[None]).reshape(*noise.shape[:2], -1), axis=-1)  # (c, n)
    terms = jnp.stack([pred * pred, pred * delta, delta * delta, (pred - delta) ** 2], axis=-1)  # (c, n, 4)
    return jnp.einsum("c,cnk->nk", weights.astype(terms.dtype), terms)


_perturbation_drops_chunk = jax.jit(perturbation_drops_chunk, static_argnums=0, static_argnames="n_columns")
_infidelity_chunk = jax.jit(infidelity_chunk, static_argnames="by_inputs")


def perturbation_drops(
    model: Model | Any,
    x: Batch,
    *,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    n_samples: int = 32,
    noise_std: float = 0.1,
    score: Score | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Float[np.ndarray, " n s"]:
    """The model's half of :func:`infidelity`: ``F(x) - F(x - I)`` per perturbation ``I ~ N(0, noise_std² 𝟙)``.

    The perturbations depend on ``key``, the sample's index and ``noise_std`` only, not on any
    map: pass the result as ``drops=`` to score many maps of the same ``x`` with one set of
    forward passes (:func:`explain.metrics.evaluate` does).

    Returns:
      ``(N, n_samples)`` output changes on the host. Arguments as :func:`infidelity`.
    """
    m = as_model(model)
    key = check_key(key, what="infidelity")
    n_samples = check_int("n_samples", n_samples)
    noise_std = check_float("noise_std", noise_std)
    x = m.input_spec.validate(x, check_range=False)  # prepare (in bind) warns about the range, once
    p = common.bind(m, x, target=target, labels=labels, score=score, default="logit", memory_budget=memory_budget)
    fx = common.scores_at(p, memory_budget)
    return common.map_draws(
        _perturbation_drops_chunk, p, fx, np.arange(p.n, dtype=np.int32), draws=np.arange(n_samples, dtype=np.int32),
        memory_budget=memory_budget, show_progress=show_progress, desc="perturbations",
        key=key, noise_std=noise_std, n_columns=n_samples,
    )  # fmt: skip


def infidelity(
    model: Model | Any,
    x: Batch,
    attributions: Batch,
    *,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    n_samples: int = 32,
    noise_std: float = 0.1,
    baseline: str | float | Batch | None = None,
    normalize: bool = False,
    score: Score | None = None,
    drops: Float[np.ndarray, " n s"] | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Float[Array, " n"]:
    """Infidelity (Yeh et al. 2019, as Captum): ``E_I[(Iᵀa - (F(x) - F(x - I)))²]``, ``I ~ N(0, noise_std² 𝟙)``.

    The expectation is the mean over ``n_samples`` perturbations. ``baseline=None`` suits
    local maps (gradient, Guided Backprop, Grad-CAM): ``Iᵀa`` as written. A ``baseline``
    declares the attributions "multiplied by inputs" (gradient × input, IG from that
    baseline) as Captum's ``infidelity_perturb_func_decorator(multiply_by_inputs=True)``:
    the perturbation enters as ``I / (x - baseline)`` (a zero denominator read as 1), so
    gradient × input of a linear model with ``baseline="zero"`` scores 0.
    ``normalize=True`` rescales the attributions by the optimal
    ``β = E[Iᵀa · Δ] / E[(Iᵀa)²]`` first (Captum's ``normalize``), making the score
    invariant to the attributions' scale. Lower is more faithful.

    Args:
      key: PRNG key for the perturbations.
      n_samples: perturbations per sample.
      noise_std: the perturbation's standard deviation, in input units.
      baseline: ``None``, or ``"zero"``, a number, one sample or ``(N, *input_shape)``.
      normalize: apply Captum's β.
      score: default ``"logit"`` for class targets (module docstring).
      drops: :func:`perturbation_drops` of the same ``x``, ``key``, ``n_samples`` and ``noise_std``, to skip
        the forward passes (then ``target``, ``labels`` and ``score`` are those ``drops`` were made with).
      (others as :func:`deletion`)

    Returns:
      ``(N,)`` infidelities.

    References:
      Yeh et al. NeurIPS 2019; Captum ``captum.metrics.infidelity``.
    """
    m = as_model(model)
    key = check_key(key, what="infidelity")
    n_samples = check_int("n_samples", n_samples)
    noise_std = check_float("noise_std", noise_std)
    if not isinstance(normalize, bool):
        raise TypeError(f"expected normalize to be a bool, got {type(normalize).__name__}")
    xv = m.input_spec.validate(x, check_range=False)
    a = common.check_attributions(attributions, xv)
    b = common.check_baseline("zero" if baseline is None else baseline, xv)
    if drops is None:
        drops = perturbation_drops(
            m, xv, key=key, target=target, labels=labels, n_samples=n_samples, noise_std=noise_std, score=score,
            memory_budget=memory_budget, show_progress=show_progress,
        )  # fmt: skip
    deltas = _check_drops(drops, len(xv), n_samples, "perturbation_drops").astype(xv.dtype)
    batch, per_call = chunking.plan(len(xv), common.forward_rows(m, xv.dtype, memory_budget), n_samples)
    fn = functools.partial(_infidelity_chunk, key=key, noise_std=noise_std, by_inputs=baseline is not None)
    sums = chunking.map_rows(
        fn, xv, a, b, deltas, np.arange(len(xv), dtype=np.int32), batch=batch,
        draws=np.arange(n_samples, dtype=np.int32), per_call=per_call,
    ).astype(np.float64)  # fmt: skip
    pp, pd, dd, err = sums.T
    if normalize:
        beta = pd / np.where(pp == 0, 1, pp)
        # Captum's expansion of E[(βp - Δ)²]; clamped at 0 against its rounding.
        err = np.maximum(beta * beta * pp - 2 * beta * pd + dd, 0.0)
    return jnp.asarray((err / n_samples).astype(xv.dtype))
