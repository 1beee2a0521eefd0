"""Vanilla gradient (signed or absolute) and Gradient × Input.

``∂F/∂x`` for the whole batch with one backward pass (batches larger than the
memory budget are split into equal compiled chunks).

References:
  Simonyan, Vedaldi, Zisserman. Deep Inside Convolutional Networks. ICLR workshop 2014.
  Shrikumar et al. Not Just a Black Box: Learning Important Features Through Propagating
  Activation Differences (Gradient × Input). 2016.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from explain import chunking
from explain.model import Model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import TargetFn


@functools.cache
def _compiled(apply: Callable, fn: TargetFn | None, times_input: bool, absolute: bool):
    def run(params, x, aux):
        g, _ = common.grad_rows(apply, fn, params, x, aux)
        if times_input:
            g = common.expand_like(x, g) * g
        return jnp.abs(g) if absolute else g

    return jax.jit(run)


def batched_gradient(
    r: common.Resolved, *, times_input: bool = False, absolute: bool = False, memory_budget: int | None = None
) -> jax.Array:
    """``∂F/∂x`` (optionally ``⊙ x``, optionally ``|·|``) of a resolved batch, chunked by the memory budget."""
    rows = common.chunk_rows(r, memory_budget, None)
    run = _compiled(r.model.apply, r.fn, times_input, absolute)
    if r.aux is None or not getattr(r.aux, "ndim", 0):
        return chunking.map_batches(lambda x: run(r.model.params, x, r.aux), r.x, batch=rows)
    return chunking.map_batches(lambda x, a: run(r.model.params, x, a), r.x, r.aux, batch=rows)


def vanilla_gradient(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    absolute: bool = False,
    memory_budget: int | None = None,
) -> Attribution:
    """The input gradient ``∂F/∂x``, or its magnitude ``|∂F/∂x|`` with ``absolute=True``.

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, *input_shape)``.
      target: see :mod:`explain.targets`, or ``"all"`` (values ``(N, K, *input_shape)``).
      labels: ``(N,)`` when ``target="loss"``.
      absolute: return ``|∂F/∂x|`` (the original saliency map of Simonyan et al.).

    Returns:
      :class:`Attribution` with ``values`` shaped like ``x``.

    Example:
      >>> vanilla_gradient(m, x, target=3).values.shape == x.shape
    """
    common.check_memory_budget(memory_budget)
    r = common.resolve(model, x, target, labels)
    g = batched_gradient(r, absolute=absolute, memory_budget=memory_budget)
    return Attribution(g, "gradient_abs" if absolute else "gradient", r.name)


def gradient_x_input(
    model: Model | Any, x: Any, *, target: Any = None, labels: Any = None, memory_budget: int | None = None
) -> Attribution:
    """Gradient × Input ``x ⊙ ∂F/∂x``: for a linear model, each feature's exact contribution ``w_i x_i``.

    Args and returns as :func:`vanilla_gradient`.
    """
    common.check_memory_budget(memory_budget)
    r = common.resolve(model, x, target, labels)
    return Attribution(batched_gradient(r, times_input=True, memory_budget=memory_budget), "gradient_x_input", r.name)
