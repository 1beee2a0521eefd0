"""The Jacobian chain: local VJPs chained from the output back, and the singular values of their product.

For cuts ``x = h_0, h_1, …, h_L`` and ``outputs = f_{L+1}(h_L)`` the local
Jacobian ``Jₗ = ∂hₗ/∂h_{l-1}`` is applied as a VJP obtained from the taps: a
zero delta on ``h_{l-1}``, read ``hₗ``. Chaining them from the output back,

    ∇_{hₗ} t = J_{l+1}ᵀ … J_{L+1}ᵀ ∇_out t,

is backpropagation written out (chain-rule primer, sections 9 and 11). At every
cut this must equal the total gradient from one end-to-end ``jax.vjp``; when it
does not, the layers are not a chain (see :mod:`explain.gradflow`).

The accumulated product ``Aₗ = ∂outputs/∂hₗ`` (``K × dim hₗ`` per sample) is
carried along by chaining the ``K`` unit cotangents too; its largest and
smallest singular values say how much a gradient is stretched or shrunk on
its way from the output to depth ``L + 1 − l``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from explain.gradflow.layers import INPUT, prepare_layers
from explain.model import Model
from explain.targets import TargetFn

_NOT_A_CHAIN = (
    "layers {layers} do not form a chain: at cut {cut!r} the gradient carried back through {nxt!r} alone differs "
    "from the total gradient by {err:.3g} (relative; tolerance {rtol:g}), so some path from {cut!r} to the output "
    "bypasses {nxt!r} (a skip connection, a branch, or a layer called twice). Cut the model only at layers that "
    "every path passes through, e.g. the top-level blocks of a sequential model."
)


class JacobianChain(NamedTuple):
    """The chain rule through ``cuts = ("input", l_1, …, l_L)``, ``C = L + 1`` cuts.

    Attributes:
      cuts: ``"input"`` then the layers in forward order.
      depth: ``(C,)`` number of local Jacobians in ``∂outputs/∂h`` at each cut (``L + 1`` at the input, 1 at ``l_L``).
      chained_input_grad: ``(N, *input_shape)``, ``J_1ᵀ … J_{L+1}ᵀ ∇_out t``.
      direct_input_grad: ``(N, *input_shape)``, the end-to-end gradient (one ``jax.vjp``).
      chain_error: ``(C,)`` relative difference between chained and total gradient at each cut.
      sigma_max: ``(N, C)`` largest singular value of ``∂outputs/∂h`` per sample (``NaN`` if not computed).
      sigma_min: ``(N, C)`` smallest of its ``min(K, dim h)`` singular values.
      target_values: ``(N,)``; target_name: what was differentiated.
    """

    cuts: tuple[str, ...]
    depth: np.ndarray
    chained_input_grad: jax.Array
    direct_input_grad: jax.Array
    chain_error: jax.Array
    sigma_max: jax.Array
    sigma_min: jax.Array
    target_values: jax.Array
    target_name: str


def _rel_err(a: jax.Array, b: jax.Array) -> jax.Array:
    tiny = jnp.finfo(b.dtype).tiny
    return jnp.linalg.norm((a - b).ravel()) / jnp.maximum(jnp.linalg.norm(b.ravel()), tiny)


def _singular_range(us: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``us``: ``(K, N, *shape)``, rows of ``A = ∂outputs/∂h`` per sample -> ``(σ_max, σ_min)`` each ``(N,)``."""
    k, n = us.shape[:2]
    a = jnp.moveaxis(us.reshape(k, n, -1), 0, 1)  # (N, K, d)
    gram = a @ jnp.swapaxes(a, 1, 2)  # (N, K, K): the singular values of A are sqrt(eig(A Aᵀ))
    sig = jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(gram), 0.0))  # ascending
    rank_cap = min(k, a.shape[2])
    return sig[:, -1], sig[:, k - rank_cap]


def chained_vjps(
    tap: Callable,
    target_fn: TargetFn,
    params: Any,
    x: jax.Array,
    aux: Any,
    layers: tuple[str, ...],
    shapes: dict,
    num_outputs: int,
    singular_values: bool,
):
    """Pure: the chain rule through ``layers`` next to the end-to-end gradient.

    Returns ``(t, chained, direct, sig_max, sig_min)``: ``chained`` and
    ``direct`` are lists over cuts ``[x, h_1 … h_L]``; ``sig_*`` are ``(N, C)``.
    """
    n = x.shape[0]
    zeros = {name: jnp.zeros((n, *shapes[name]), x.dtype) for name in layers}

    def total(x, deltas):
        out, _ = tap(params, x, deltas)
        return target_fn(out, aux), out

    t, vjp_total, out = jax.vjp(total, x, zeros, has_aux=True)
    direct_x, direct_h = vjp_total(jnp.ones_like(t))
    direct = [direct_x] + [direct_h[name] for name in layers]

    # ∇_out t, then (optionally) the K unit cotangents that build ∂outputs/∂h row by row.
    _, vjp_target = jax.vjp(lambda o: target_fn(o, aux), out)
    (g_out,) = vjp_target(jnp.ones_like(t))
    cot = g_out[None]
    if singular_values:
        eye = jnp.broadcast_to(jnp.eye(num_outputs, dtype=out.dtype)[:, None, :], (num_outputs, n, num_outputs))
        cot = jnp.concatenate([cot, eye])  # (1 + K, N, K)

    def segment(src: str | None, dst: str | None):
        # h_src -> h_dst through the taps; src None is the input, dst None the outputs.
        def f(v):
            if src is None:
                o, acts = tap(params, v, {})
            else:
                o, acts = tap(params, x, {src: v})
            return o if dst is None else acts[dst]

        return f

    points = [None, *layers]
    chained = [None] * len(points)
    for i in range(len(points) - 1, -1, -1):
        src, dst = points[i], points[i + 1] if i + 1 < len(points) else None
        _, vjp = jax.vjp(segment(src, dst), x if src is None else zeros[src])
        cot = jax.vmap(lambda c, vjp=vjp: vjp(c)[0])(cot)
        chained[i] = cot
    grads = [c[0] for c in chained]
    if singular_values:
        pairs = [_singular_range(c[1:]) for c in chained]
        sig_max = jnp.stack([p[0] for p in pairs], axis=1)
        sig_min = jnp.stack([p[1] for p in pairs], axis=1)
    else:
        sig_max = sig_min = jnp.full((n, len(points)), jnp.nan, x.dtype)
    return t, grads, direct, sig_max, sig_min


@functools.cache
def _compiled_chain(tap: Callable, target_fn: TargetFn, layers: tuple, shapes: tuple, k: int, singular_values: bool):
    shapes = dict(shapes)

    def run(params, x, aux):
        t, grads, direct, smax, smin = chained_vjps(tap, target_fn, params, x, aux, layers, shapes, k, singular_values)
        errs = jnp.stack([_rel_err(c, d) for c, d in zip(grads, direct)])
        return t, grads[0], direct[0], errs, smax, smin

    return jax.jit(run)


def jacobian_chain(
    model: Model,
    x: Any,
    *,
    labels: Any = None,
    target: Any = None,
    layers: str | Sequence[str] | None = None,
    singular_values: bool = True,
    rtol: float | None = None,
) -> JacobianChain:
    """Chains the local VJPs from the output back to the input and checks them against ``jax.grad``.

    ``∇_x t = J_1ᵀ J_2ᵀ … J_{L+1}ᵀ ∇_out t`` with ``Jₗ = ∂hₗ/∂h_{l-1}``
    (primer, section 11). Each segment's VJP reruns the forward pass with a
    zero delta on its source layer, so the cost is about ``L + 1`` forward and
    backward passes, times ``1 + K`` cotangents when ``singular_values``.

    Args:
      model: a tapped :class:`~explain.model.Model`.
      x: ``(N, *input_spec.shape)``.
      labels, target: as :func:`explain.gradient_flow` (the loss when labels are given).
      layers: the cuts, names from ``model.layer_names`` that form a chain (module
        doc of :mod:`explain.gradflow`); default the top-level layers; sorted into forward order.
      singular_values: also compute ``σ_max, σ_min`` of ``∂outputs/∂hₗ`` per sample.
      rtol: largest relative chain error accepted at any cut before raising;
        default ``1e-3`` for float32 and ``1e-8`` for float64 inputs.

    Returns:
      :class:`JacobianChain`.

    Raises:
      ValueError: unknown layers, bad input (before compiling), or layers that are not a chain.

    Example:
      >>> ch = explain.jacobian_chain(m, x, labels=y)
      >>> ch.chain_error.max(), ch.sigma_max.mean(axis=0)
    """
    model, x, fn, aux, tname, names, shapes = prepare_layers(model, x, labels=labels, target=target, layers=layers)
    if rtol is None:
        rtol = 1e-8 if x.dtype == jnp.float64 else 1e-3
    if not rtol > 0:
        raise ValueError(f"expected rtol > 0, got {rtol}")
    run = _compiled_chain(model.tap, fn, names, shapes, model.num_outputs, bool(singular_values))
    t, chained_x, direct_x, errs, smax, smin = run(model.params, x, aux)
    cuts = (INPUT, *names)
    host = np.asarray(errs)
    # The chained gradient is carried from the output back, so the break is the last cut that fails.
    for i in range(len(host) - 1, -1, -1):
        err = host[i]
        if not err <= rtol:
            nxt = cuts[i + 1] if i + 1 < len(cuts) else "outputs"
            raise ValueError(_NOT_A_CHAIN.format(layers=list(names), cut=cuts[i], nxt=nxt, err=err, rtol=rtol))
    return JacobianChain(
        cuts=cuts,
        depth=np.arange(len(cuts), 0, -1),
        chained_input_grad=chained_x,
        direct_input_grad=direct_x,
        chain_error=errs,
        sigma_max=smax,
        sigma_min=smin,
        target_values=t,
        target_name=tname,
    )
