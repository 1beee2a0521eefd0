"""The result every saliency method returns: an :class:`Attribution`."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from explain.results import Result


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Attribution(Result):
    """An attribution map and what produced it.

    A pytree (``values``, ``convergence_delta`` and ``steps`` are leaves;
    ``method`` and ``target_name`` are static), so it can be returned from
    ``jax.jit`` or stacked with ``jax.tree_util.tree_map``.

    Attributes:
      values: shaped like ``x`` ``(N, *input_shape)``; with ``target="all"``
        ``(N, K, *input_shape)``, one map per class.
      method: the method's name, e.g. ``"integrated_gradients"``.
      target_name: what was differentiated, e.g. ``"logit[class]"`` or ``"all"``.
      convergence_delta: path methods only: ``sum(values) - (F(x) - F(baseline))``
        per sample ``(N,)`` (``(N, K)`` with ``target="all"``); the completeness
        error of the quadrature.
      steps: path methods only: integration steps used, ``(N,)`` int per sample
        (the adaptive variant may use different counts per sample).
    """

    values: jax.Array | np.ndarray
    method: str = dataclasses.field(default="", metadata=dict(static=True))
    target_name: str = dataclasses.field(default="", metadata=dict(static=True))
    convergence_delta: jax.Array | np.ndarray | None = None
    steps: jax.Array | np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)
