"""The chain-rule primer's worked examples as code: each local derivative by JAX, multiplied, beside ``jax.grad``.

Every function returns a :class:`ChainRuleExample`: the factors (each one the
derivative of one small step, computed separately by ``jax.grad``), the
chained value (their product, or the sum over paths), the end-to-end
``jax.grad`` of the composition, and the closed form from the primer. The
dashboard shows them as a table; the tests prove they agree.

References:
  The chain-rule primer (``shared/reference/chain-rule-primer.md``), sections 3, 4, 7 and 10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SIGMOID_DERIVATIVE_MAX = 0.25


class ChainRuleExample(NamedTuple):
    """One worked example.

    Attributes:
      formula: the composition, in words.
      factors: ``(name, value)`` per local derivative, in chain order.
      chained: the factors combined by the chain rule (product, or sum of products over paths).
      autodiff: ``jax.grad`` of the whole composition.
      closed_form: the primer's formula evaluated.
    """

    formula: str
    factors: tuple[tuple[str, float], ...]
    chained: float
    autodiff: float
    closed_form: float


def _d(f: Callable, *args) -> float:
    return float(jax.grad(f)(*args))


def square_of_affine(x: float) -> ChainRuleExample:
    """``y = (3x + 1)²`` split as ``u = 3x + 1``, ``y = u²``: ``dy/dx = (dy/du)(du/dx) = 2u · 3 = 6(3x + 1)``."""
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    u = 3 * x + 1
    dy_du = _d(lambda u: u**2, u)
    du_dx = _d(lambda x: 3 * x + 1, x)
    return ChainRuleExample(
        formula="y = (3x + 1)^2",
        factors=(("dy/du = 2u", dy_du), ("du/dx = 3", du_dx)),
        chained=dy_du * du_dx,
        autodiff=_d(lambda x: (3 * x + 1) ** 2, x),
        closed_form=float(6 * (3 * x + 1)),
    )


def _f(x, y):
    return x * y + jnp.sin(x)


def _g(t):
    return t**2


def _h(t):
    return jnp.exp(t)


def two_paths(
    t: float,
    f: Callable = _f,
    g: Callable = _g,
    h: Callable = _h,
) -> ChainRuleExample:
    """``z = f(x, y)``, ``x = g(t)``, ``y = h(t)``: ``dz/dt = (∂z/∂x)(dx/dt) + (∂z/∂y)(dy/dt)``.

    One variable reaches the output through two paths and the chain rule sums
    them. The defaults are ``f = xy + sin x``, ``g = t²``, ``h = eᵗ``, whose
    closed form is ``dz/dt = (eᵗ + cos t²)·2t + t²eᵗ``; with other functions
    ``closed_form`` is NaN.
    """
    t = jnp.asarray(t, dtype=jnp.result_type(float))
    x, y = g(t), h(t)
    dz_dx = float(jax.grad(f, argnums=0)(x, y))
    dz_dy = float(jax.grad(f, argnums=1)(x, y))
    dx_dt, dy_dt = _d(g, t), _d(h, t)
    defaults = f is _f and g is _g and h is _h
    closed = (jnp.exp(t) + jnp.cos(t**2)) * 2 * t + t**2 * jnp.exp(t) if defaults else jnp.nan
    return ChainRuleExample(
        formula="z = f(x, y), x = g(t), y = h(t)",
        factors=(("dz/dx", dz_dx), ("dx/dt", dx_dt), ("dz/dy", dz_dy), ("dy/dt", dy_dt)),
        chained=dz_dx * dx_dt + dz_dy * dy_dt,
        autodiff=_d(lambda t: f(g(t), h(t)), t),
        closed_form=float(closed),
    )


def single_neuron(w: float, b: float, x: float, y: float) -> ChainRuleExample:
    """``z = wx + b``, ``ŷ = σ(z)``, ``L = (ŷ − y)²``: ``∂L/∂w = 2(ŷ − y) · σ'(z) · x``."""
    w, b, x, y = (jnp.asarray(v, dtype=jnp.result_type(float)) for v in (w, b, x, y))
    z = w * x + b
    y_hat = jax.nn.sigmoid(z)
    dl_dyhat = _d(lambda p: (p - y) ** 2, y_hat)
    dyhat_dz = _d(jax.nn.sigmoid, z)
    dz_dw = _d(lambda w: w * x + b, w)
    return ChainRuleExample(
        formula="z = wx + b, y_hat = sigmoid(z), L = (y_hat - y)^2",
        factors=(("dL/dy_hat = 2(y_hat - y)", dl_dyhat), ("dy_hat/dz = sigmoid'(z)", dyhat_dz), ("dz/dw = x", dz_dw)),
        chained=dl_dyhat * dyhat_dz * dz_dw,
        autodiff=_d(lambda w: (jax.nn.sigmoid(w * x + b) - y) ** 2, w),
        closed_form=float(2 * (y_hat - y) * y_hat * (1 - y_hat) * x),
    )


def sigmoid_derivative_max(*, low: float = -20.0, high: float = 20.0, num: int = 400_001) -> float:
    """``max σ'(x)`` over a dense grid, by ``jax.grad`` (the primer's ``σ'(x) ≤ 0.25``, attained at 0)."""
    if not high > low or num < 2:
        raise ValueError(f"expected low < high and num >= 2, got low={low}, high={high}, num={num}")
    grid = jnp.linspace(low, high, num)
    return float(jnp.max(jax.vmap(jax.grad(jax.nn.sigmoid))(grid)))


def sigmoid_chain_bound(depth: int) -> float:
    """``0.25^depth``: the largest product of ``depth`` sigmoid derivatives (primer, section 10)."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"expected depth >= 1 (an int), got {depth!r}")
    return SIGMOID_DERIVATIVE_MAX ** int(depth)
