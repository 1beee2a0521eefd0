"""Global feature rankings over a dataset, with bootstrap intervals and rank stability.

Per-row scores ``s (N, F)``, one matrix per method, all non-negative magnitudes:

* ``"vanilla_gradient"``: ``|∂t/∂xₖ| · σₖ`` with ``σₖ`` the standard deviation of feature
  ``k`` over the rows given, so a feature's units do not decide its rank;
* ``"gradient_x_input"``: ``|xₖ · ∂t/∂xₖ|``;
* ``"integrated_gradients"``: ``|IGₖ|`` against a baseline from a separate reference set;
* ``"permutation_importance"``: the per-row permutation effect (:mod:`explain.sensitivity.permutation`).

A method's score is ``mean_i sᵢₖ``. The bootstrap (Efron 1979) resamples rows
with replacement: resample ``b`` is an index vector ``I_b ∈ {0..N-1}^N`` of
independent uniform draws; its row counts ``c_b = bincount(I_b)`` (an exact
multinomial resample) turn every method's resampled mean into one matrix
product ``c_b · s / N`` (the same resamples for every method, so their
intervals are comparable). Intervals are percentiles of the ``B`` resampled
means; rank stability is the share of resamples in which a feature is among the
``top_k``. A ranking needs ``N >= 2`` rows.

Resample ``b``'s ``N`` indices come from its own segment of one NumPy PCG64 stream
seeded with the explicit ``key``'s data (the generator is advanced to the segment,
an O(log) jump): its raw 64-bit output, cut into 32-bit words, costs a fraction of
threefry's on XLA CPU (benchmarks/sensitivity_bench.py). Each word below the largest
multiple of ``N`` is taken modulo ``N``; words above it are redrawn from the
resample's own child stream, so every index is exactly uniform and resample ``b``
never depends on how the resamples are chunked. Counting and the matrix product
run on the device in chunks of resamples within ``memory_budget``; when the
per-row scores themselves do not fit the budget, counts are made on the host and
the product runs over chunks of rows, so memory does not grow with ``N``.

References:
  Efron. Bootstrap Methods: Another Look at the Jackknife. Annals of Statistics 7, 1979.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt

from explain import checks, chunking, gradients
from explain.model import Model
from explain.saliency import integrated
from explain.sensitivity import local, permutation
from explain.sensitivity.data import check_rows_for_statistics, check_tabular, feature_names, host_generator, key_words
from explain.sensitivity.result import GlobalSensitivity, MethodRanking

GRADIENT_METHODS = local.METHODS
PERMUTATION = "permutation_importance"
BOOTSTRAP_RNG = (
    "numpy PCG64 seeded with the key data, advanced to resample b's segment; index = word mod N, words >= the largest "
    "multiple of N redrawn from resample b's child stream"
)
# Device bytes per (resample, row) while counting: the word, its flat index and the count.
_COUNT_BYTES = 16


def bootstrap_generator(key: jax.Array) -> np.random.Generator:
    """The NumPy PCG64 generator determined by ``key`` (a typed key or raw ``uint32 (2,)`` key data)."""
    return host_generator(key)


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


def resample_words(key: jax.Array, resamples: np.ndarray, n: int, dtype: type = np.uint32) -> np.ndarray:
    """Words ``(len(resamples), n)`` of the given resamples, each exactly uniform on ``[0, L)`` (see module doc).

    Resample ``b`` is the ``b``-th segment of ``ceil(n · bits / 64)`` raw outputs of the
    key's PCG64 stream, with its words ``>= L`` redrawn from its own child stream
    (:func:`~explain.sensitivity.data.host_generator` ``(key, b)``): the same
    resample gives the same words in any chunk.
    """
    bits = np.iinfo(dtype).bits
    limit = (1 << bits) // n * n
    per = -(-n * bits // 64)
    resamples = np.asarray(resamples)
    gen = np.random.PCG64(np.random.SeedSequence(key_words(key)))
    out = np.empty((len(resamples), n), dtype)
    if len(resamples) and np.array_equal(resamples, np.arange(resamples[0], resamples[0] + len(resamples))):
        # Consecutive resamples are consecutive segments of the stream: one advance and one draw.
        gen.advance(int(resamples[0]) * per)
        out[:] = gen.random_raw(len(resamples) * per).reshape(len(resamples), per).view(dtype)[:, :n]
    else:
        start = gen.state
        for row, b in enumerate(resamples.tolist()):
            gen.state = start
            gen.advance(int(b) * per)
            out[row] = gen.random_raw(per).view(dtype)[:n]
    if limit < 1 << bits:
        for row in np.flatnonzero((out >= limit).any(axis=1)).tolist():
            bad = np.flatnonzero(out[row] >= limit)
            out[row, bad] = uniform_words(host_generator(key, int(resamples[row])), (bad.size,), n, dtype)
    return out


@jax.jit
def _resampled_means(words: UInt[Array, " c n"] | np.ndarray, scores: Float[Array, " n m"]) -> Float[Array, " c m"]:
    """Means ``(C, M)`` of ``scores (N, M)`` over resamples ``words % N`` ``(C, N)``: row counts, then one matmul."""
    c, n = words.shape
    idx = (words % jnp.asarray(n, words.dtype)).astype(jnp.int32)
    flat = (idx + n * jnp.arange(c, dtype=jnp.int32)[:, None]).ravel()
    # (C, N) = bincount per resample; every index is in range by construction.
    counts = jnp.zeros((c * n,), scores.dtype).at[flat].add(1.0, mode="promise_in_bounds").reshape(c, n)
    return counts @ scores / n


@jax.jit
def _weighted_counts(
    counts: Float[Array, " r c"], scores: Float[Array, " r m"], weights: Float[Array, " r"]
) -> Float[Array, " c m"]:
    """``Σ_r w_r counts[r, :] ⊗ scores[r, :]``: one chunk of rows of ``countsᵀ · scores``."""
    return jnp.einsum("rc,r,rm->cm", counts, weights.astype(scores.dtype), scores.astype(counts.dtype))


def bootstrap_means(
    scores: Float[Array, " n m"] | np.ndarray,
    *,
    n_bootstrap: int,
    key: jax.Array,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Float[Array, " b m"]:
    """Row-bootstrap means ``(B, M)`` of per-row scores ``(N, M)``, deterministic from ``(key, N, B)``.

    Resample ``b`` is the same whatever the memory budget (:func:`resample_words`). When
    the scores and one resample's counts fit ``memory_budget``, chunks of resamples are
    counted and multiplied on the device (:func:`explain.chunking.map_rows` over resample
    indices); otherwise one resample at a time is counted on the host and ``counts · scores``
    runs over chunks of rows (:func:`explain.chunking.accumulate`).
    """
    n, m = scores.shape
    dtype = word_dtype(n)
    budget = chunking.check_budget(memory_budget)
    scores = np.asarray(scores)
    resamples = np.arange(n_bootstrap)
    fixed = scores.nbytes  # the scores, on the device for every chunk of resamples
    if fixed + n * _COUNT_BYTES <= budget:
        cap = max(1, min((budget - fixed) // (n * _COUNT_BYTES), (2**31 - 1) // n))  # the flat count index is int32
        per_call = -(-n_bootstrap // -(-n_bootstrap // cap))  # equal chunks: the padded last one wastes little
        device_scores = jnp.asarray(scores)
        draw = lambda b: _resampled_means(resample_words(key, b, n, dtype), device_scores)  # noqa: E731
        out = chunking.map_rows(draw, resamples, batch=per_call, show_progress=show_progress, desc="bootstrap")
        return jnp.asarray(out)
    rows = max(1, budget // ((1 + m) * scores.itemsize * 2))  # a chunk of counts and scores, and their product

    def host_counted(b: np.ndarray) -> np.ndarray:
        words = resample_words(key, b, n, dtype)
        flat = (words % dtype(n)).astype(np.int64) + n * np.arange(len(b))[:, None]
        counts = np.bincount(flat.ravel(), minlength=len(b) * n).reshape(len(b), n).astype(scores.dtype)
        fn = lambda items, w: _weighted_counts(items[0], items[1], w)  # noqa: E731
        return np.asarray(chunking.accumulate(fn, (counts.T, scores), rows)) / n

    return jnp.asarray(
        chunking.map_rows(host_counted, resamples, batch=1, show_progress=show_progress, desc="bootstrap")
    )


def summarise(
    method: str, scores: np.ndarray, boot: np.ndarray, *, ci: float, top_k: int, reference: np.ndarray | None
) -> MethodRanking:
    """A :class:`MethodRanking` from per-row mean ``scores (F,)`` and bootstrap means ``boot (B, F)``."""
    alpha = (1.0 - ci) / 2.0
    lower, upper = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    top = np.argsort(-boot, axis=1, kind="stable")[:, :top_k]  # (B, k)
    share = np.zeros(boot.shape, bool)
    np.put_along_axis(share, top, True, axis=1)
    rho = None if reference is None else jnp.asarray(permutation.spearman(scores, reference), scores.dtype)
    return MethodRanking(
        method,
        local.DESCRIPTIONS[method] + _SCALING.get(method, ""),
        jnp.asarray(scores),
        jnp.asarray(lower.astype(scores.dtype)),
        jnp.asarray(upper.astype(scores.dtype)),
        jnp.asarray(share.mean(0).astype(scores.dtype)),
        rho,
    )


_SCALING = {
    "vanilla_gradient": " (mean |·|, × σ_k)",
    "gradient_x_input": " (mean |·|)",
    "integrated_gradients": " (mean |·|)",
}


def rank(
    model: Model | Any,
    x: local.Rows,
    *,
    key: jax.Array | None,
    target: Any = None,
    labels: Any = None,
    methods: Sequence[str] | str = GRADIENT_METHODS,
    names: Sequence[str] | None = None,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    top_k: int = 5,
    permutation_samples: int = 0,
    permutation_kind: str = "auto",
    baseline: local.BaselineKind | Any = "mean",
    references: Any = None,
    steps: int = 50,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> GlobalSensitivity:
    """Ranks features by how much they move a target over a dataset, with intervals and stability.

    Args:
      model: a tabular :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, F)`` rows (``N >= 2``), or a DataFrame matched by column name.
      key: an explicit ``jax.random.key`` for the bootstrap (and the permutations); same key, same result.
      target, labels: see :mod:`explain.targets`; ``target="loss"`` needs ``labels (N,)``.
      methods: gradient methods among ``"vanilla_gradient"``, ``"gradient_x_input"``,
        ``"integrated_gradients"`` (may be empty with permutation importance on).
      names: column names of an array ``x``, matched to the model's feature names.
      n_bootstrap: row resamples ``B`` (default 200).
      ci: interval level in (0, 1) (default 0.95, percentile intervals).
      top_k: ``k`` of the rank-stability share.
      permutation_samples: random permutations per feature for permutation importance
        (its ``n_samples``); ``0`` (default) skips it. When on, every gradient ranking
        reports its Spearman agreement with it.
      permutation_kind: ``"auto"`` (loss increase for a loss target, else mean |prediction change|),
        ``"increase"`` or ``"abs_change"``.
      baseline: Integrated Gradients' baseline: ``"mean"`` (default: the feature means of
        ``references``), ``"zero"`` or an ``(F,)`` array.
      references: for ``baseline="mean"``: reference rows ``(R, F)`` (e.g. the training split)
        or their feature means ``(F,)``; required then, so a row's IG never depends on the other rows.
      steps: Integrated Gradients' quadrature points.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`);
        gradients, paths, permutations and bootstrap are chunked within it.
      show_progress: a progress bar for long calls.

    Returns:
      :class:`~explain.sensitivity.result.GlobalSensitivity`, one ranking per method, keyed by
      method name (``"permutation_importance"`` last when on).

    Raises:
      ValueError / TypeError: before compilation, for bad rows (or fewer than 2), names, target,
        options, key, or Integrated Gradients with ``baseline="mean"`` and no ``references``.

    Warns:
      RuntimeWarning: a feature is constant over the rows (its spread, hence its scaled scores, are 0).

    Example:
      >>> r = rank(m, x, target="loss", labels=y, key=jax.random.key(0), references=x_train, permutation_samples=5)
      >>> print(r.table("vanilla_gradient", top=10)); r.to_csv("ranking.csv")
    """
    methods = local.check_methods(methods, allow_empty=True)
    n_bootstrap = checks.check_int("n_bootstrap", n_bootstrap)
    ci = checks.check_float("ci", ci, minimum=0.0, maximum=1.0)
    if not 0.0 < ci < 1.0:
        raise ValueError(f"expected ci strictly between 0 and 1, got {ci:g}")
    top_k = checks.check_int("top_k", top_k)
    permutation_samples = checks.check_int("permutation_samples", permutation_samples, minimum=0)
    if not methods and not permutation_samples:
        raise ValueError(
            f"nothing to rank: pass methods= (some of {list(GRADIENT_METHODS)}) and/or permutation_samples >= 1"
        )
    checks.check_choice("permutation kind", permutation_kind, permutation.KINDS)
    _, steps = integrated.check_rule(local.RULE, steps)
    chunking.check_budget(memory_budget)
    key = checks.check_key(key, what="the bootstrap")
    model, x = check_tabular(model, x, names=names)
    n, f = x.shape
    if top_k > f:
        raise ValueError(f"expected top_k <= {f} (the number of features), got {top_k}")
    sigma = check_rows_for_statistics(x, model, what="a global ranking")
    ig = "integrated_gradients" in methods
    base, described = local.check_baseline(model, x, baseline, references) if ig else (None, None)
    p = gradients.prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    kind = permutation.resolve_kind(permutation_kind, p.target.name) if permutation_samples else None

    # From here on x is validated and the target frozen once; nothing below checks them again.
    boot_key, perm_key = jax.random.split(key)
    per_row: dict[str, np.ndarray] = {}
    if methods:
        signed, _ = local.attributions(
            p, methods, baseline=base, steps=steps, memory_budget=memory_budget, show_progress=show_progress
        )
        scale = sigma.astype(x.dtype)
        per_row = {m: np.abs(v) * scale if m == "vanilla_gradient" else np.abs(v) for m, v in signed.items()}
    if permutation_samples:
        per_row[PERMUTATION] = permutation.permutation_rows(
            p, n_samples=permutation_samples, key=perm_key, kind=kind, memory_budget=memory_budget,
            show_progress=show_progress,
        )  # fmt: skip
    stacked = np.concatenate(list(per_row.values()), axis=1)  # (N, M·F): one bootstrap for all methods
    boot = bootstrap_means(
        stacked, n_bootstrap=n_bootstrap, key=boot_key, memory_budget=memory_budget, show_progress=show_progress
    )
    boot = np.asarray(boot).reshape(n_bootstrap, -1, f)
    means = stacked.mean(axis=0).reshape(-1, f)
    ref = means[-1] if permutation_samples else None
    rankings = {
        m: summarise(m, means[i], boot[:, i], ci=ci, top_k=top_k, reference=ref if m != PERMUTATION else None)
        for i, m in enumerate(per_row)
    }
    settings = {
        "model": model.name,
        "target": p.target.name,
        "methods": list(per_row),
        "n_rows": int(n),
        "n_bootstrap": n_bootstrap,
        "ci": ci,
        "interval": "bootstrap percentile over rows",
        "bootstrap_rng": BOOTSTRAP_RNG,
        "top_k": top_k,
        "vanilla_gradient_scale": "feature standard deviation over the rows given",
        "feature_std": sigma.tolist(),
        "baseline": described,
        "steps": steps if ig else None,
        "permutation_samples": permutation_samples,
        "permutation_kind": kind,
        "key": key_words(key),
    }
    return GlobalSensitivity(feature_names(model), rankings, settings)


def permutation_importance(
    model: Model | Any,
    x: local.Rows,
    *,
    key: jax.Array | None,
    target: Any = None,
    labels: Any = None,
    n_samples: int = 5,
    kind: str = "auto",
    names: Sequence[str] | None = None,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    top_k: int = 5,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> GlobalSensitivity:
    """Permutation importance alone, with the same bootstrap intervals (see :mod:`explain.sensitivity.permutation`).

    Args:
      n_samples: random permutations per feature (sklearn's ``n_repeats``), ``>= 1``.
      kind: ``"auto"``, ``"increase"`` or ``"abs_change"`` (as ``permutation_kind`` of :func:`rank`).
      (others as :func:`rank`)

    Returns:
      :class:`~explain.sensitivity.result.GlobalSensitivity` with the one ranking ``"permutation_importance"``.

    Example:
      >>> p = permutation_importance(m, x, target="loss", labels=y, key=jax.random.key(0))
      >>> p["permutation_importance"].scores
    """
    n_samples = checks.check_int("n_samples", n_samples)
    return rank(
        model, x, key=key, target=target, labels=labels, methods=(), names=names, n_bootstrap=n_bootstrap, ci=ci,
        top_k=top_k, permutation_samples=n_samples, permutation_kind=kind, memory_budget=memory_budget,
        show_progress=show_progress,
    )  # fmt: skip
