"""Vanilla gradient (signed or absolute) and Gradient × Input.

``∂F/∂x`` for the whole batch with one backward pass per chunk of rows.

References:
  Simonyan, Vedaldi, Zisserman. Deep Inside Convolutional Networks. ICLR workshop 2014.
  Shrikumar et al. Not Just a Black Box: Learning Important Features Through Propagating
  Activation Differences (Gradient × Input). 2016.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from explain.arrays import Batch
from explain.gradients import prepare, target_and_grad
from explain.model import Model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget


def vanilla_gradient_core(
    apply: Callable, params: Any, x: Float[Array, " n *features"], target: BoundTarget, *, absolute: bool = False
) -> Attribution:
    """Pure: ``∂F/∂x`` (``|∂F/∂x|`` with ``absolute``), ``(N, ...)`` or ``(N, K, ...)`` for ``target="all"``."""
    _, g, _ = target_and_grad(apply, params, x, target)
    return Attribution(jnp.abs(g) if absolute else g, "vanilla_gradient", target.name)


def gradient_x_input_core(
    apply: Callable, params: Any, x: Float[Array, " n *features"], target: BoundTarget
) -> Attribution:
    """Pure: ``x ⊙ ∂F/∂x``."""
    _, g, _ = target_and_grad(apply, params, x, target)
    return Attribution(common.expand_like(x, g) * g, "gradient_x_input", target.name)


_vanilla = jax.jit(vanilla_gradient_core, static_argnums=0, static_argnames="absolute")
_times_input = jax.jit(gradient_x_input_core, static_argnums=0)


def vanilla_gradient(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    absolute: bool = False,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """The input gradient ``∂F/∂x``, or its magnitude ``|∂F/∂x|`` with ``absolute=True``
    (the original saliency map of Simonyan et al.). Other arguments: :mod:`explain.saliency`.

    Example:
      >>> vanilla_gradient(m, x, target=3).values.shape == x.shape
    """
    p = prepare(model, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
    a = common.run_rows(_vanilla, p, memory_budget=memory_budget, show_progress=show_progress, absolute=absolute)
    return common.to_attribution(a)


def gradient_x_input(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Gradient × Input ``x ⊙ ∂F/∂x``: for a linear model, each feature's exact contribution ``w_i x_i``."""
    p = prepare(model, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
    return common.to_attribution(
        common.run_rows(_times_input, p, memory_budget=memory_budget, show_progress=show_progress)
    )
