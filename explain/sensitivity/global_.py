"""Global feature rankings over a dataset, with bootstrap intervals and rank stability.

Per-row scores ``s (N, F)``, one matrix per method, all non-negative magnitudes:

* ``grad``: ``|∂t/∂xₖ| · σₖ`` with ``σₖ`` the standard deviation of feature ``k`` over
  the rows given, so a feature's units do not decide its rank;
* ``gxi``: ``|xₖ · ∂t/∂xₖ|``;  ``ig``: ``|IGₖ|``;
* ``permutation``: the per-row permutation effect (:mod:`explain.sensitivity.permutation`).

A method's score is ``mean_i sᵢₖ``. The bootstrap (Efron 1979) resamples rows
with replacement: resample ``b`` is an index vector ``I_b ∈ {0..N-1}^N``; its
row counts ``c_b = bincount(I_b)`` turn every method's resampled mean into one
matrix product ``c_b · s / N`` (the same resamples for every method, so their
intervals are comparable). Intervals are percentiles of the ``B`` resampled
means; rank stability is the share of resamples in which a feature is among the
``top_k``. All ``B`` resamples run as chunks of one compiled call
(:func:`explain.chunking.map_batches`), from an explicit ``key``.

References:
  Efron. Bootstrap Methods: Another Look at the Jackknife. Annals of Statistics 7, 1979.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain import chunking
from explain.model import Model
from explain.saliency import _common as checks
from explain.sensitivity import local, permutation
from explain.sensitivity.data import check_tabular, feature_names
from explain.sensitivity.result import GlobalSensitivity, MethodRanking

BOOTSTRAP_BUDGET = 64 * 2**20
GRADIENT_METHODS = ("grad", "gxi", "ig")


@functools.partial(jax.jit, static_argnames=("n",))
def _resample_indices(keys: jax.Array, n: int) -> jax.Array:
    """Row indices ``(C, N)`` of one chunk of bootstrap resamples, one key each.

    32 random bits modulo ``N``: the bias is below ``N / 2³²`` (2e-6 for 10,000
    rows) and it draws half the bits of ``randint``.
    """
    return (jax.vmap(lambda k: jax.random.bits(k, (n,), jnp.uint32))(keys) % n).astype(jnp.int32)


@jax.jit
def _resampled_means(idx: jax.Array, scores: jax.Array) -> jax.Array:
    """Means ``(C, M)`` of ``scores (N, M)`` over resamples ``idx (C, N)``: row counts, then one matmul."""
    c, n = idx.shape
    flat = (idx + n * jnp.arange(c, dtype=jnp.int32)[:, None]).ravel()
    counts = jnp.zeros((c * n,), scores.dtype).at[flat].add(1.0).reshape(c, n)  # (C, N) = bincount per resample
    return counts @ scores / n


def bootstrap_means(scores: jax.Array, *, n_bootstrap: int, key: jax.Array) -> jax.Array:
    """Row-bootstrap means ``(B, M)`` of per-row scores ``(N, M)``; chunks of resamples bound the memory.

    Drawing the indices and counting them are two compiled calls: fused into
    one, XLA CPU ran the pair 2.5x slower (benchmarks/sensitivity_bench.py).
    """
    n = scores.shape[0]
    keys = jax.random.split(key, n_bootstrap)
    chunk = chunking.chunk_size_for(n_bootstrap, n * 12, BOOTSTRAP_BUDGET)  # idx, flat index, counts: 12 B/row
    return chunking.map_batches(lambda k: _resampled_means(_resample_indices(k, n), scores), keys, batch=chunk)


def summarise(
    method: str, scores: np.ndarray, boot: np.ndarray, *, ci: float, top_k: int, reference: np.ndarray | None
) -> MethodRanking:
    """A :class:`MethodRanking` from per-row mean ``scores (F,)`` and bootstrap means ``boot (B, F)``."""
    alpha = (1.0 - ci) / 2.0
    lower, upper = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    top = np.argsort(-boot, axis=1, kind="stable")[:, :top_k]  # (B, k)
    share = np.zeros(boot.shape, bool)
    np.put_along_axis(share, top, True, axis=1)
    rho = None if reference is None else permutation.spearman(scores, reference)
    return MethodRanking(
        method, local.DESCRIPTIONS[method] + _SCALING.get(method, ""), scores, lower, upper, share.mean(0), rho
    )


_SCALING = {"grad": " (mean |·|, × σ_k)", "gxi": " (mean |·|)", "ig": " (mean |·|)"}


def rank(
    model: Model | Any,
    x: Any,
    *,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    methods: Sequence[str] | str = ("grad", "gxi", "ig"),
    names: Sequence[str] | None = None,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    top_k: int = 5,
    permutation_repeats: int = 0,
    permutation_kind: permutation.Kind = "auto",
    ig_baseline: local.IgBaseline | Any = "mean",
    ig_steps: int = 50,
    batch_size: int = local.DEFAULT_BATCH,
) -> GlobalSensitivity:
    """Ranks features by how much they move a target over a dataset, with intervals and stability.

    Args:
      model: a tabular :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, F)`` rows, or a DataFrame matched by column name.
      key: PRNG key for the bootstrap (and the permutations); same key, same result.
      target, labels: see :mod:`explain.targets`; ``target="loss"`` needs ``labels (N,)``.
      methods: gradient methods among ``"grad"``, ``"gxi"``, ``"ig"`` (may be empty with permutation on).
      names: column names of an array ``x``, matched to the model's feature names.
      n_bootstrap: row resamples ``B`` (default 200).
      ci: interval level in (0, 1) (default 0.95, percentile intervals).
      top_k: ``k`` of the rank-stability share.
      permutation_repeats: shuffles per feature for permutation importance; ``0`` (default) skips it.
        When on, every gradient ranking reports its Spearman agreement with it.
      permutation_kind: ``"auto"`` (loss increase for a loss target, else mean |prediction change|),
        ``"increase"`` or ``"abs_change"``.
      ig_baseline: ``"mean"`` (feature means of ``x``; default), ``"zero"`` or an ``(F,)`` array.
      ig_steps: IG quadrature points.
      batch_size: rows per compiled gradient call.

    Returns:
      :class:`~explain.sensitivity.result.GlobalSensitivity`.

    Raises:
      ValueError / TypeError: before compilation, for bad rows, names, target, options or key.

    Example:
      >>> r = rank(m, x, target="loss", labels=y, key=jax.random.key(0), permutation_repeats=5)
      >>> print(r.table("grad", top=10)); r.to_csv("ranking.csv")
    """
    methods = () if isinstance(methods, (tuple, list)) and not methods else local.check_methods(methods)
    n_bootstrap = checks.check_int("n_bootstrap", n_bootstrap)
    ci = checks.check_float("ci", ci, minimum=0.0, maximum=1.0)
    if not 0.0 < ci < 1.0:
        raise ValueError(f"expected ci strictly between 0 and 1, got {ci:g}")
    top_k = checks.check_int("top_k", top_k)
    permutation_repeats = checks.check_int("permutation_repeats", permutation_repeats, minimum=0)
    if not methods and not permutation_repeats:
        raise ValueError("nothing to rank: pass methods=('grad', 'gxi', 'ig') and/or permutation_repeats >= 1")
    ig_steps = checks.check_int("ig_steps", ig_steps)
    batch_size = checks.check_int("batch_size", batch_size)
    key = checks.check_key(key, what="the bootstrap")
    model, x = check_tabular(model, x, names=names)
    n, f = x.shape
    if top_k > f:
        raise ValueError(f"expected top_k <= {f} (the number of features), got {top_k}")

    fn, aux, target_name = local.resolve_target(model, x, target, labels)
    kind = permutation.resolve_kind(permutation_kind, target_name) if permutation_repeats else None
    boot_key, perm_key = jax.random.split(key)
    per_row: dict[str, jax.Array] = {}
    if methods:
        signed, _, _ = local.attributions(
            model,
            x,
            methods,
            target=target,
            labels=labels,
            ig_baseline=ig_baseline,
            ig_steps=ig_steps,
            batch=batch_size,
        )
        sigma = jnp.std(x, axis=0)
        per_row = {m: jnp.abs(v) * sigma if m == "grad" else jnp.abs(v) for m, v in signed.items()}
    if permutation_repeats:
        per_row["permutation"] = permutation.permutation_rows(
            model, x, fn, aux, n_repeats=permutation_repeats, key=perm_key, kind=kind
        )
    stacked = jnp.concatenate(list(per_row.values()), axis=1)  # (N, M·F): one bootstrap for all methods
    boot = np.asarray(bootstrap_means(stacked, n_bootstrap=n_bootstrap, key=boot_key)).reshape(n_bootstrap, -1, f)
    means = np.asarray(jnp.mean(stacked, axis=0)).reshape(-1, f)
    ref = means[-1] if permutation_repeats else None
    rankings = {
        m: summarise(m, means[i], boot[:, i], ci=ci, top_k=top_k, reference=ref if m != "permutation" else None)
        for i, m in enumerate(per_row)
    }
    settings = {
        "model": model.name,
        "target": target_name,
        "methods": list(per_row),
        "n_rows": int(n),
        "n_bootstrap": n_bootstrap,
        "ci": ci,
        "interval": "bootstrap percentile over rows",
        "top_k": top_k,
        "grad_scale": "feature standard deviation over the rows given",
        "feature_std": np.asarray(jnp.std(x, axis=0)).tolist(),
        "ig_baseline": local.describe_baseline(ig_baseline) if "ig" in methods else None,
        "ig_steps": ig_steps if "ig" in methods else None,
        "permutation_repeats": permutation_repeats,
        "permutation_kind": kind,
        "key": np.asarray(jax.random.key_data(key)).ravel().tolist(),
    }
    return GlobalSensitivity(feature_names(model), rankings, settings)


def permutation_importance(
    model: Model | Any,
    x: Any,
    *,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    n_repeats: int = 5,
    kind: permutation.Kind = "auto",
    names: Sequence[str] | None = None,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    top_k: int = 5,
) -> GlobalSensitivity:
    """Permutation importance alone, with the same bootstrap intervals (see :mod:`explain.sensitivity.permutation`).

    Args: as :func:`rank`; ``n_repeats`` shuffles per feature, ``kind`` as ``permutation_kind``.

    Example:
      >>> p = permutation_importance(m, x, target="loss", labels=y, key=jax.random.key(0))
      >>> p["permutation"].scores
    """
    return rank(
        model, x, key=key, target=target, labels=labels, methods=(), names=names, n_bootstrap=n_bootstrap, ci=ci,
        top_k=top_k, permutation_repeats=n_repeats, permutation_kind=kind,
    )  # fmt: skip
