"""Global feature rankings over a dataset, with bootstrap intervals and rank stability.

Per-row scores ``s (N, F)``, one matrix per method, all non-negative magnitudes:

* ``grad``: ``|∂t/∂xₖ| · σₖ`` with ``σₖ`` the standard deviation of feature ``k`` over
  the rows given, so a feature's units do not decide its rank;
* ``gxi``: ``|xₖ · ∂t/∂xₖ|``;  ``ig``: ``|IGₖ|`` against a baseline from a separate reference set;
* ``permutation``: the per-row permutation effect (:mod:`explain.sensitivity.permutation`).

A method's score is ``mean_i sᵢₖ``. The bootstrap (Efron 1979) resamples rows
with replacement: resample ``b`` is an index vector ``I_b ∈ {0..N-1}^N`` of
independent uniform draws; its row counts ``c_b = bincount(I_b)`` (an exact
multinomial resample) turn every method's resampled mean into one matrix
product ``c_b · s / N`` (the same resamples for every method, so their
intervals are comparable). Intervals are percentiles of the ``B`` resampled
means; rank stability is the share of resamples in which a feature is among the
``top_k``. A ranking needs ``N >= 2`` rows.

The ``B·N`` uniform indices come from NumPy's PCG64 seeded with the explicit
``key``'s data: its raw 64-bit output, cut into 32-bit words, costs a fraction
of threefry's on XLA CPU (benchmarks/sensitivity_bench.py measures both). Each word below the largest
multiple of ``N`` is taken modulo ``N``, words above it are redrawn, so every
index is exactly uniform. Counting and the matrix product run on the device,
in chunks of resamples that bound the memory.

References:
  Efron. Bootstrap Methods: Another Look at the Jackknife. Annals of Statistics 7, 1979.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain import checks, chunking
from explain.model import Model
from explain.sensitivity import local, permutation
from explain.sensitivity.data import check_rows_for_statistics, check_tabular, feature_names
from explain.sensitivity.result import GlobalSensitivity, MethodRanking

BOOTSTRAP_BUDGET = 64 * 2**20
# Host drawing alternates with device counting in small steps. Gradients + bootstrap over 10,000 rows on
# XLA CPU (interleaved scratch timing): 4 chunks 5.9 ms, 1 chunk 7.4 ms, 8 chunks 6.4 ms; the bootstrap
# alone in benchmarks/sensitivity_bench.py is within noise of one chunk (6.6 vs 6.2 ms).
PIPELINE_CHUNKS = 4
GRADIENT_METHODS = ("grad", "gxi", "ig")
BOOTSTRAP_RNG = "numpy PCG64 seeded with the key data; index = word mod N, words >= the largest multiple of N redrawn"


def bootstrap_generator(key: jax.Array) -> np.random.Generator:
    """A NumPy PCG64 generator determined by ``key`` (a typed key or raw ``uint32 (2,)`` key data)."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(np.asarray(data, np.uint32).ravel().tolist())))


def word_dtype(n: int) -> type:
    """``uint32`` words: fewer than ``N / 2³²`` of them are redrawn.

    16-bit words halve the bits but redraw up to half of them (8% for
    ``N = 10,000``); patching those cost more than the bits saved (the benchmark
    times both).
    """
    if n >= 2**31:  # the flat count index is int32
        raise ValueError(f"expected fewer than 2**31 rows to resample, got {n}")
    return np.uint32


def uniform_words(rng: np.random.Generator, shape: tuple[int, ...], n: int, dtype: type = np.uint32) -> np.ndarray:
    """Unsigned words ``shape`` uniform on ``[0, L)`` with ``L`` the largest multiple of ``n`` in range.

    ``word % n`` is then exactly uniform on ``{0..n-1}``. Raw generator output is
    cut into words; the few words ``>= L`` are redrawn until none remain.
    """
    bits = np.iinfo(dtype).bits
    limit = (1 << bits) // n * n
    size = int(np.prod(shape))

    def draw(k: int) -> np.ndarray:
        return rng.bit_generator.random_raw(-(-k * bits // 64)).view(dtype)[:k]

    words = draw(size)
    if limit < 1 << bits:
        bad = np.flatnonzero(words >= limit)
        while bad.size:
            fresh = draw(bad.size)
            words[bad] = fresh
            bad = bad[fresh >= limit]
    return words.reshape(shape)


@jax.jit
def _resampled_means(words: jax.Array, scores: jax.Array) -> jax.Array:
    """Means ``(C, M)`` of ``scores (N, M)`` over resamples ``words % N`` ``(C, N)``: row counts, then one matmul."""
    c, n = words.shape
    idx = (words % jnp.asarray(n, words.dtype)).astype(jnp.int32)
    flat = (idx + n * jnp.arange(c, dtype=jnp.int32)[:, None]).ravel()
    # (C, N) = bincount per resample; every index is in range by construction.
    counts = jnp.zeros((c * n,), scores.dtype).at[flat].add(1.0, mode="promise_in_bounds").reshape(c, n)
    return counts @ scores / n


def bootstrap_means(scores: jax.Array, *, n_bootstrap: int, key: jax.Array) -> jax.Array:
    """Row-bootstrap means ``(B, M)`` of per-row scores ``(N, M)``, deterministic from ``(key, N, B)``.

    Resamples are drawn in order from one generator, in chunks of at most a
    quarter of ``B`` (bounded by ``BOOTSTRAP_BUDGET``), so host drawing and device
    counting alternate in small steps. The last chunk is padded so it does not
    recompile.
    """
    n = scores.shape[0]
    dtype = word_dtype(n)
    rng = bootstrap_generator(key)
    per_resample = n * (np.dtype(dtype).itemsize + 8)  # words, flat index, counts
    chunk = chunking.chunk_size_for(n_bootstrap, per_resample, BOOTSTRAP_BUDGET)
    chunk = min(chunk, -(-n_bootstrap // PIPELINE_CHUNKS))
    outs = []
    for start, stop in chunking.chunk_bounds(n_bootstrap, chunk):
        words = uniform_words(rng, (stop - start, n), n, dtype)
        if stop - start < chunk:
            words = np.concatenate([words, np.zeros((chunk - (stop - start), n), dtype)])
        outs.append(_resampled_means(words, scores)[: stop - start])
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs)


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
    reference: Any = None,
    ig_steps: int = 50,
    batch_size: int = local.DEFAULT_BATCH,
) -> GlobalSensitivity:
    """Ranks features by how much they move a target over a dataset, with intervals and stability.

    Args:
      model: a tabular :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, F)`` rows (``N >= 2``), or a DataFrame matched by column name.
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
      ig_baseline: ``"mean"`` (default: the feature means of ``reference``), ``"zero"`` or an ``(F,)`` array.
      reference: for IG with ``ig_baseline="mean"``: reference rows ``(R, F)`` (e.g. the training split)
        or their feature means ``(F,)``; required then, so a row's IG never depends on the other rows.
      ig_steps: IG quadrature points.
      batch_size: rows per compiled gradient call.

    Returns:
      :class:`~explain.sensitivity.result.GlobalSensitivity`.

    Raises:
      ValueError / TypeError: before compilation, for bad rows (or fewer than 2), names, target,
        options, key, or IG with ``ig_baseline="mean"`` and no ``reference``.

    Warns:
      RuntimeWarning: a feature is constant over the rows (its spread, hence its scaled scores, are 0).

    Example:
      >>> r = rank(m, x, target="loss", labels=y, key=jax.random.key(0), reference=x_train, permutation_repeats=5)
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
    checks.check_choice("permutation kind", permutation_kind, permutation.KINDS)
    ig_steps = checks.check_int("ig_steps", ig_steps)
    batch_size = checks.check_int("batch_size", batch_size)
    key = checks.check_key(key, what="the bootstrap")
    model, x = check_tabular(model, x, names=names)
    n, f = x.shape
    if top_k > f:
        raise ValueError(f"expected top_k <= {f} (the number of features), got {top_k}")
    sigma = check_rows_for_statistics(x, model, what="a global ranking")
    base, described = local.check_baseline(model, x, ig_baseline, reference) if "ig" in methods else (None, None)
    fn, aux, target_name = local.resolve_target(model, x, target, labels)
    kind = permutation.resolve_kind(permutation_kind, target_name) if permutation_repeats else None

    # From here on x is validated and the target frozen once; nothing below checks them again.
    boot_key, perm_key = jax.random.split(key)
    per_row: dict[str, jax.Array] = {}
    if methods:
        signed, _ = local.attributions_impl(
            model, x, methods, fn, aux, target_name, baseline=base, ig_steps=ig_steps, batch=batch_size
        )
        scale = jnp.asarray(sigma, x.dtype)
        per_row = {m: jnp.abs(v) * scale if m == "grad" else jnp.abs(v) for m, v in signed.items()}
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
        "bootstrap_rng": BOOTSTRAP_RNG,
        "top_k": top_k,
        "grad_scale": "feature standard deviation over the rows given",
        "feature_std": sigma.tolist(),
        "ig_baseline": described,
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
