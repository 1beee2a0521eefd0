"""The one batching policy: chunk sizes from one memory budget, padded chunks, results streamed to the host.

Every method, attack, sensitivity ranking, gradient-flow call and the batch API
runs its compiled core through these helpers:

* :data:`MEMORY_BUDGET` is the one default working-set budget of a compiled
  call; every public function takes ``memory_budget=`` (bytes) to override it.
* :func:`rows_per_chunk` turns the budget into model rows per call;
  :func:`plan` splits those rows between samples and draws (steps, noise
  samples, windows, restarts).
* :func:`map_rows` runs a compiled function over chunks of samples, slicing the
  inputs and the target's per-row data together, padding the last chunk so
  shapes never recompile, and copying each chunk's result into one host array:
  device memory does not grow with ``N``.
* :func:`accumulate` sums a compiled function over chunks of draws (weights
  zero on the padding): device memory does not grow with steps or samples.

A Python loop over one jitted chunk beat ``lax.scan`` over the same chunks by
about 2.5× on XLA CPU (DESIGN.md), so loops are Python loops. Progress bars
(tqdm) are off by default in library calls; the command line turns them on,
and they appear only once a call has run for a few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from explain.checks import check_optional_int

# The one working-set budget of a compiled call (activations kept for the backward pass, inputs,
# gradients and accumulators). With shapes_cnn (64x64x3) it gives 88 rows per call.
MEMORY_BUDGET = 256 * 2**20
# Models without a tap expose no activation shapes; assume this many activations per input
# feature (a conv net with 32-64 channels at input resolution over a few layers), so the
# default chunk errs on the small side instead of assuming a linear model.
NO_TAP_ACTIVATIONS_PER_FEATURE = 64
# A forward-only row keeps no activations for a backward pass: about a third of a backward row's working set.
FORWARD_ROWS_PER_ROW = 3
# A Hessian-vector product (forward over reverse) carries a tangent through the backward pass: twice its rows.
HVP_FACTOR = 2
_PROGRESS_DELAY_S = 3.0


def check_budget(memory_budget: Any) -> int:
    """``memory_budget`` in bytes (``None``: :data:`MEMORY_BUDGET`); a positive int else ``ValueError``."""
    value = check_optional_int("memory_budget (bytes)", memory_budget)
    return MEMORY_BUDGET if value is None else value


def row_bytes(model: Any, dtype: Any = jnp.float32) -> int:
    """Estimated working set of one model row in a backward pass, in bytes.

    Every tappable activation kept for the backward pass (×3 for its cotangent
    and temporaries) plus the input (×4: point, gradient, accumulators). A model
    without a tap is assumed to hold :data:`NO_TAP_ACTIVATIONS_PER_FEATURE`
    activations per input feature.
    """
    features = math.prod(model.input_spec.shape)
    shapes = model.layer_shapes if model.tap is not None else {}
    acts = sum(math.prod(s) for s in shapes.values()) or NO_TAP_ACTIVATIONS_PER_FEATURE * features
    return np.dtype(dtype).itemsize * (3 * acts + 4 * features)


def rows_per_chunk(model: Any, *, memory_budget: int | None = None, factor: int = 1, dtype: Any = jnp.float32) -> int:
    """Model rows one compiled call may take: the budget over ``factor ×`` :func:`row_bytes` (at least 1).

    ``factor`` counts extra per-row work, e.g. ``K`` backward passes for ``target="all"``.
    """
    return max(1, check_budget(memory_budget) // (max(1, factor) * row_bytes(model, dtype)))


def plan(n: int, rows: int, draws: int = 1) -> tuple[int, int]:
    """``(samples per call, draws per call)`` for ``n`` samples × ``draws`` draws within ``rows`` rows.

    Samples are split first (so memory never grows with ``n``); the draws of
    one call share what is left of the row budget.
    """
    batch = max(1, min(n, rows))
    return batch, max(1, min(draws, rows // batch))


def balanced(total: int, chunk: int) -> int:
    """The chunk size of ``ceil(total / chunk)`` equal chunks: at most ``chunk``, with the least padding.

    130 rows at 88 per call run as two calls of 65, not 88 + 42 padded to 88 (35% of the
    rows computed for nothing).
    """
    chunk = max(1, min(chunk, total))
    return -(-total // -(-total // chunk)) if total else chunk


def chunk_bounds(total: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(total)`` in steps of ``chunk``."""
    if chunk < 1:
        raise ValueError(f"expected chunk >= 1, got {chunk}")
    for start in range(0, total, chunk):
        yield start, min(start + chunk, total)


def _rows(a: Any, start: int, stop: int, size: int) -> Any:
    """Rows ``start:stop`` of every leaf of ``a``, padded to ``size`` rows by repeating row ``start``."""

    def one(leaf):
        part = leaf[start:stop]
        if stop - start == size:
            return part
        pad = np.repeat(np.asarray(leaf[start : start + 1]), size - (stop - start), axis=0)
        return np.concatenate([np.asarray(part), pad]) if isinstance(part, np.ndarray) else jnp.concatenate([part, pad])

    return jax.tree_util.tree_map(one, a)


_PAGE = 4096


def host_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised host array whose data starts on a page boundary.

    XLA's CPU client takes such a buffer without copying it (:func:`to_device`),
    so a result of ``N`` rows costs its own size once, not twice.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _PAGE, np.uint8)
    start = (-raw.ctypes.data) % _PAGE
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def to_device(tree: Any) -> Any:
    """Host results as JAX arrays: ``jax.device_put`` aliases page-aligned host buffers on CPU (no copy)."""
    return jax.tree_util.tree_map(jax.device_put, tree)


def progress(total: int, *, enabled: bool, desc: str) -> tqdm:
    """A tqdm bar over ``total`` compiled calls, shown only after a few seconds and only if ``enabled``."""
    return tqdm(total=total, desc=desc, disable=not enabled, delay=_PROGRESS_DELAY_S, leave=False)


def map_rows(
    fn: Callable[..., Any],
    *arrays: Any,
    batch: int,
    draws: Any = None,
    per_call: int = 1,
    show_progress: bool = False,
    desc: str = "chunks",
) -> Any:
    """``fn`` over aligned chunks of ``batch`` rows of every array (pytrees allowed), results on the host.

    Args:
      fn: a jitted function. Without ``draws``: ``fn(*row_chunks)``. With ``draws``:
        ``fn(*row_chunks, draw_chunk, weights)`` returning a pytree already summed over
        its ``per_call`` draws (``weights`` ``(per_call,)`` is 1 on real draws and 0 on
        padding), which is summed over all draw chunks here.
      arrays: pytrees whose leaves share the leading axis ``N`` (inputs, the target, baselines).
      batch: rows per call; the last chunk is padded (repeating its first row) and trimmed.
      draws: optional array (or pytree) of draws with leading axis ``S`` (quadrature
        nodes, sample indices, windows), best a host array so slicing compiles nothing.
      per_call: draws per call; the last draw chunk is padded with zero weight.

    Returns:
      ``fn``'s pytree with every leaf a NumPy array of leading axis ``N``, filled chunk by
      chunk: no device array grows with ``N`` or ``S``.
    """
    n = jax.tree_util.tree_leaves(arrays)[0].shape[0]
    batch = balanced(n, batch)
    n_draws = 0 if draws is None else jax.tree_util.tree_leaves(draws)[0].shape[0]
    per_call = max(1, min(per_call, n_draws or 1))
    out = None
    with progress(-(-n // batch) * max(1, -(-n_draws // per_call)), enabled=show_progress, desc=desc) as bar:
        for start, stop in chunk_bounds(n, batch):
            rows = [_rows(a, start, stop, batch) for a in arrays]
            if draws is None:
                res = fn(*rows)
                bar.update()
            else:
                res = accumulate(lambda d, w, rows=rows: fn(*rows, d, w), draws, per_call, bar=bar)
            leaves, treedef = jax.tree_util.tree_flatten(res)
            if out is None:
                out = [host_empty((n, *r.shape[1:]), r.dtype) for r in leaves]
            for o, r in zip(out, leaves, strict=True):
                o[start:stop] = np.asarray(r)[: stop - start]
    return jax.tree_util.tree_unflatten(treedef, out)


def accumulate(fn: Callable[[Any, jax.Array], Any], items: Any, chunk: int, *, bar: tqdm | None = None) -> Any:
    """``Σ fn(items[a:b], weights)`` over chunks of draws; ``fn`` returns a pytree already summed over its chunk.

    ``items`` is an array (or pytree) of draws with leading axis ``S``. The last
    chunk is padded by repeating its first item and ``weights`` (``(chunk,)``,
    ones and zeros) removes the padding's contribution, so the chunk shape never
    changes. Host arrays are sliced on the host: a new ``S`` compiles nothing new.
    """
    total = jax.tree_util.tree_leaves(items)[0].shape[0]
    chunk = balanced(total, chunk)
    acc = None
    for start, stop in chunk_bounds(total, chunk):
        weights = np.zeros((chunk,), np.float32)
        weights[: stop - start] = 1.0
        # Wait for each chunk: XLA:CPU runs independent dispatched calls at once, so without this several
        # chunks' working sets would be live together and the budget would bound a single call only (IG-50 on
        # 256 shapes images: peak RSS 787-855 MiB dispatched freely, 525-651 MiB waiting, same run time).
        part = jax.block_until_ready(fn(_rows(items, start, stop, chunk), jnp.asarray(weights)))
        acc = part if acc is None else jax.tree_util.tree_map(jnp.add, acc, part)
        if bar is not None:
            bar.update()
    return acc
