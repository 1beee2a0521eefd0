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

Resample ``b``'s ``N`` indices are 32-bit words of its own segment of one NumPy PCG64
stream seeded with the ``key``'s data (a fraction of threefry's cost on XLA CPU), each
word modulo ``N``; words ``>= L``, the largest multiple of ``N`` below ``2³²``, are redrawn
from the resample's own child stream, so every index is exactly uniform and resample ``b``
never depends on how the resamples are chunked (:func:`bootstrap_means`).

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
from explain.sensitivity import local, permutation
from explain.sensitivity.data import feature_names, host_generator, key_words
from explain.sensitivity.result import GlobalSensitivity, MethodRanking

GRADIENT_METHODS = local.METHODS
PERMUTATION = "permutation_importance"
BOOTSTRAP_RNG = (
    "numpy PCG64 seeded with the key data, advanced to resample b's segment; index = word mod N, words >= the largest "
    "multiple of N redrawn from resample b's child stream"
)
# Device bytes per (resample, row) while counting: the word, its flat index and the count.
_COUNT_BYTES = 16
# Resamples are counted in (at least) this many chunks, so that drawing chunk k + 1 on the host overlaps
# counting chunk k on the device (10,000 rows, 200 resamples on XLA CPU: about half the time of one chunk).
PIPELINE_DEPTH = 4
_SCALING = dict(
    vanilla_gradient=" (mean |·|, × σ_k)", gradient_x_input=" (mean |·|)", integrated_gradients=" (mean |·|)"
)

# The NumPy PCG64 generator determined by ``key`` (a typed key or raw ``uint32 (2,)`` key data).
bootstrap_generator = host_generator


def word_dtype(n: int) -> type:
    """``uint32`` words (fewer than ``N / 2³²`` redrawn; 16-bit words redraw up to half and cost more)."""
    if n >= 2**31:  # the flat count index is int32
        raise ValueError(f"expected fewer than 2**31 rows to resample, got {n}")
    return np.uint32


def _limit(n: int, dtype: type) -> tuple[int, int]:
    """``(bits, L)``: the word size and ``L``, the largest multiple of ``n`` below ``2^bits``."""
    bits = np.iinfo(dtype).bits
    return bits, (1 << bits) // n * n


def uniform_words(rng: np.random.Generator, shape: tuple[int, ...], n: int, dtype: type = np.uint32) -> np.ndarray:
    """Words ``shape`` uniform on ``[0, L)``, so ``word % n`` is exactly uniform: raw output, words ``>= L`` redrawn."""
    bits, limit = _limit(n, dtype)
    size = int(np.prod(shape))

    def draw(k: int) -> np.ndarray:
        return rng.bit_generator.random_raw(-(-k * bits // 64)).view(dtype)[:k]

    words = draw(size)
    bad = np.flatnonzero(words >= limit)
    while bad.size:
        fresh = draw(bad.size)
        words[bad] = fresh
        bad = bad[fresh >= limit]
    return words.reshape(shape)


def resample_words(key: jax.Array, resamples: np.ndarray, n: int, dtype: type = np.uint32) -> np.ndarray:
    """Words ``(len(resamples), n)`` uniform on ``[0, L)``: resample ``b`` is the ``b``-th segment of the key's stream.

    Its words ``>= L`` are redrawn from its own child stream (:func:`~explain.sensitivity.data.host_generator`
    ``(key, b)``), so the same resample gives the same words in any chunk.
    """
    bits, limit = _limit(n, dtype)
    per = -(-n * bits // 64)  # raw 64-bit outputs per resample
    resamples = np.asarray(resamples, np.int64)
    gen = np.random.PCG64(np.random.SeedSequence(key_words(key)))
    start = gen.state

    def segment(b: int, count: int) -> np.ndarray:
        gen.state = start
        gen.advance(b * per)
        return gen.random_raw(count * per).view(dtype).reshape(count, per * 64 // bits)[:, :n]

    first = int(resamples[0]) if resamples.size else 0
    if np.array_equal(resamples, np.arange(first, first + resamples.size)):  # one advance and one draw
        out = segment(first, resamples.size)
    else:
        out = np.concatenate([segment(b, 1) for b in resamples.tolist()])
    for row in np.flatnonzero((out >= limit).any(axis=1)).tolist():
        bad = np.flatnonzero(out[row] >= limit)
        out[row, bad] = uniform_words(host_generator(key, int(resamples[row])), (bad.size,), n, dtype)
    return out


@jax.jit
def _split_data(key: jax.Array) -> tuple[UInt[Array, " w"], UInt[Array, " 2 w"]]:
    """The data of ``key`` and of ``jax.random.split(key)``, in one call (not one eager op each)."""
    split = jax.random.split(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key), jax.random.key_data(split)
    return key, split


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
def _weighted_sum(
    items: tuple[Float[Array, " r"], Float[Array, " r m"]], weights: Float[Array, " r"]
) -> Float[Array, " m"]:
    """``Σ_r w_r c_r s_r``: one chunk of rows of ``counts · scores``."""
    counts, scores = items
    return (weights.astype(counts.dtype) * counts) @ scores


def bootstrap_means(
    scores: Float[Array, " n m"] | np.ndarray,
    *,
    n_bootstrap: int,
    key: jax.Array,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Float[Array, " b m"]:
    """Row-bootstrap means ``(B, M)`` of per-row scores ``(N, M)``, deterministic from ``(key, N, B)``.

    Resample ``b`` is the same whatever the memory budget (:func:`resample_words`). When the
    scores and one resample's counts fit ``memory_budget``, equal chunks of resamples (the last
    one's extra resamples drawn and dropped, so nothing recompiles) are counted on the device
    without waiting, while the host draws the next chunks, as many at once as fit the budget;
    otherwise one resample at a time is counted on the host and ``counts · scores`` runs over
    chunks of rows (:func:`explain.chunking.accumulate`).
    """
    n, m = scores.shape
    dtype, budget, scores = word_dtype(n), chunking.check_budget(memory_budget), np.asarray(scores)
    key = np.asarray(key_words(key), np.uint32)  # the key's data once, not once per chunk and redraw
    per_resample = n * _COUNT_BYTES
    if scores.nbytes + per_resample > budget:
        rows = max(1, budget // ((1 + m) * scores.itemsize * 2))  # a chunk of counts and scores, and their product

        def host_counted(b: np.ndarray) -> np.ndarray:
            counts = np.bincount(resample_words(key, b, n, dtype)[0] % dtype(n), minlength=n).astype(scores.dtype)
            return np.asarray(chunking.accumulate(_weighted_sum, (counts, scores), rows))[None] / n

        counted = chunking.map_rows(
            host_counted, np.arange(n_bootstrap), batch=1, show_progress=show_progress, desc="bootstrap"
        )
        return jnp.asarray(counted)
    cap = (budget - scores.nbytes) // per_resample
    cap = min(cap, (2**31 - 1) // n, -(-n_bootstrap // PIPELINE_DEPTH))  # the flat count index is int32
    per_call = chunking.balanced(n_bootstrap, cap)  # equal chunks: the last one wastes little
    in_flight = (budget - scores.nbytes) // (per_call * per_resample)  # chunks counting at once within the budget
    device_scores, means = jnp.asarray(scores), []
    with chunking.progress(-(-n_bootstrap // per_call), enabled=show_progress, desc="bootstrap") as bar:
        for start, _ in chunking.chunk_bounds(n_bootstrap, per_call):  # the last chunk is drawn whole, trimmed below
            words = resample_words(key, np.arange(start, start + per_call), n, dtype)  # while earlier chunks count
            if len(means) >= in_flight:
                means[-in_flight].block_until_ready()
            means.append(_resampled_means(words, device_scores))  # asynchronous: returns before counting is done
            bar.update()
    return jnp.asarray(np.concatenate(jax.device_get(means))[:n_bootstrap])


def summarise(
    method: str, scores: np.ndarray, boot: np.ndarray, *, ci: float, top_k: int, reference: np.ndarray | None
) -> MethodRanking:
    """A :class:`MethodRanking` from per-row mean ``scores (F,)`` and bootstrap means ``boot (B, F)``."""
    alpha = (1.0 - ci) / 2.0
    lower, upper = np.quantile(boot, [alpha, 1.0 - alpha], axis=0).astype(scores.dtype)
    top = np.argsort(-boot, axis=1, kind="stable")[:, :top_k]  # (B, k)
    share = np.bincount(top.ravel(), minlength=boot.shape[1]).astype(scores.dtype) / boot.shape[0]
    rho = None if reference is None else np.asarray(permutation.spearman(scores, reference), scores.dtype)
    arrays = jax.device_put((scores, lower, upper, share, rho))
    return MethodRanking(method, local.DESCRIPTIONS[method] + _SCALING.get(method, ""), *arrays)


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
      model, x, target, labels, names, baseline, references, steps, memory_budget, show_progress:
        as :func:`~explain.sensitivity.local.local_sensitivity`, with ``N >= 2`` rows and an ``(F,)``
        baseline; ``memory_budget`` also bounds the permutations and the bootstrap.
      key: an explicit ``jax.random.key`` for the bootstrap (and the permutations); same key, same result.
      methods: gradient methods among ``"vanilla_gradient"``, ``"gradient_x_input"``,
        ``"integrated_gradients"`` (may be empty with permutation importance on).
      n_bootstrap: row resamples ``B`` (default 200).
      ci: interval level in (0, 1) (default 0.95, percentile intervals).
      top_k: ``k`` of the rank-stability share.
      permutation_samples: random permutations per feature for permutation importance
        (its ``n_samples``); ``0`` (default) skips it. When on, every gradient ranking
        reports its Spearman agreement with it.
      permutation_kind: ``"auto"`` (loss increase for a loss target, else mean |prediction change|),
        ``"increase"`` or ``"abs_change"``.

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
    if not 0.0 < (ci := checks.check_float("ci", ci, maximum=1.0)) < 1.0:
        raise ValueError(f"expected ci strictly between 0 and 1, got {ci:g}")
    top_k = checks.check_int("top_k", top_k)
    permutation_samples = checks.check_int("permutation_samples", permutation_samples, minimum=0)
    if not methods and not permutation_samples:
        raise ValueError(
            f"nothing to rank: pass methods= (some of {list(GRADIENT_METHODS)}) and/or permutation_samples >= 1"
        )
    checks.check_choice("permutation kind", permutation_kind, permutation.KINDS)
    key = checks.check_key(key, what="the bootstrap")
    model, x, sigma, base, described, steps = local.check_inputs(
        model, x, names=names, memory_budget=memory_budget, methods=methods, baseline=baseline,
        references=references, steps=steps, statistics="a global ranking", top_k=top_k,
    )  # fmt: skip
    n, f = x.shape
    p = gradients.prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    kind = permutation.resolve_kind(permutation_kind, p.target.name) if permutation_samples else None

    # From here on x is validated and the target frozen once; nothing below checks them again.
    key_data, (boot_key, perm_key) = jax.device_get(_split_data(key))  # raw key data: host streams need no device
    per_row, t = {}, None
    if methods:
        signed, t = local.attributions(
            p, methods, baseline=base, steps=steps, memory_budget=memory_budget, show_progress=show_progress
        )
        per_row = {
            m: np.abs(v) * sigma.astype(x.dtype) if m == "vanilla_gradient" else np.abs(v) for m, v in signed.items()
        }
    if permutation_samples:
        # The target values of the gradient pass are the permutations' reference: no extra forward pass.
        per_row[PERMUTATION] = permutation.permutation_rows(
            p, n_samples=permutation_samples, key=perm_key, kind=kind, memory_budget=memory_budget,
            show_progress=show_progress, base=t,
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
    settings = dict(
        model=model.name, target=p.target.name, methods=list(per_row), n_rows=int(n), n_bootstrap=n_bootstrap, ci=ci,
        interval="bootstrap percentile over rows", bootstrap_rng=BOOTSTRAP_RNG, top_k=top_k,
        vanilla_gradient_scale="feature standard deviation over the rows given", feature_std=sigma.tolist(),
        baseline=described, steps=steps, permutation_samples=permutation_samples, permutation_kind=kind,
        key=key_data.tolist(),
    )  # fmt: skip
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
    return rank(
        model, x, key=key, target=target, labels=labels, methods=(), names=names, n_bootstrap=n_bootstrap, ci=ci,
        top_k=top_k, permutation_samples=checks.check_int("n_samples", n_samples), permutation_kind=kind,
        memory_budget=memory_budget, show_progress=show_progress,
    )  # fmt: skip
