"""The Jacobian chain: local VJPs chained from the output back, and the singular values of their product.

For cuts ``x = h_0, h_1, …, h_L`` and ``outputs = f_{L+1}(h_L)`` the local
Jacobian ``Jₗ = ∂hₗ/∂h_{l-1}`` is applied as a VJP obtained from the taps: a
zero delta on ``h_{l-1}``, read ``hₗ``. Chaining them from the output back,

    ∇_{hₗ} t = J_{l+1}ᵀ … J_{L+1}ᵀ ∇_out t,

is backpropagation written out (chain-rule primer, sections 9 and 11). At every
cut this must equal the total gradient from one end-to-end backward pass; when
it does not, the layers are not a chain (see :mod:`explain.gradflow`).

Every VJP here is a target gradient of :mod:`explain.gradients`: ``Jₗᵀ c`` is
the gradient, with respect to ``h_{l-1}``, of the target ``⟨hₗ, c⟩`` (one value
per sample), taken by :func:`~explain.gradients.target_and_layer_grad` (or
:func:`~explain.gradients.target_and_grad` at the input). Under ``jax.vmap``
over cotangents the forward pass is shared and only the backward pass is batched.

The accumulated product ``Aₗ = ∂outputs/∂hₗ`` (``K × dim hₗ`` per sample) is
carried along by chaining the ``K`` unit cotangents too; its largest and
smallest singular values say how much a gradient is stretched or shrunk on
its way from the output to depth ``L + 1 − l``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_float
from explain.gradflow.layers import INPUT, StackedTap, prepare_layers, tap_apply
from explain.gradients import target_and_grad, target_and_layer_grad
from explain.model import Model
from explain.results import Result
from explain.targets import BoundTarget

_NOT_A_CHAIN = (
    "layers {layers} do not form a chain: at cut {cut!r} the gradient carried back through {nxt!r} alone differs "
    "from the total gradient by {err:.3g} (relative; tolerance {rtol:g}), so some path from {cut!r} to the output "
    "bypasses {nxt!r} (a skip connection, a branch, or a layer called twice). Cut the model only at layers that "
    "every path passes through, e.g. the top-level blocks of a sequential model."
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class JacobianChain(Result):
    """The chain rule through ``cuts = ("input", l_1, …, l_L)``, ``C = L + 1`` cuts.

    Attributes:
      cuts: ``"input"`` then the layers in forward order (static).
      chained_input_grad: ``(N, *input_shape)``, ``J_1ᵀ … J_{L+1}ᵀ ∇_out t``.
      direct_input_grad: ``(N, *input_shape)``, the end-to-end gradient (one backward pass).
      chain_error: ``(C,)`` relative difference ``‖chained - total‖ / ‖total‖`` over the batch at each cut.
      sigma_max: ``(N, C)`` largest singular value of ``∂outputs/∂h`` per sample (``NaN`` if not computed).
      sigma_min: ``(N, C)`` smallest of its ``min(K, dim h)`` singular values.
      target_values: ``(N,)``; target_name: what was differentiated (static).
    """

    cuts: tuple[str, ...] = dataclasses.field(metadata=dict(static=True))
    chained_input_grad: Float[Array | np.ndarray, " n *features"]
    direct_input_grad: Float[Array | np.ndarray, " n *features"]
    chain_error: Float[Array | np.ndarray, " c"]
    sigma_max: Float[Array | np.ndarray, " n c"]
    sigma_min: Float[Array | np.ndarray, " n c"]
    target_values: Float[Array | np.ndarray, " n"]
    target_name: str = dataclasses.field(metadata=dict(static=True))

    @property
    def depth(self) -> np.ndarray:
        """``(C,)`` number of local Jacobians in ``∂outputs/∂h`` at each cut (``L + 1`` at the input, 1 at ``l_L``)."""
        return np.arange(len(self.cuts), 0, -1)


# ----------------------------------------------------------------------------- pure


def _dot(out: jax.Array, cot: jax.Array) -> jax.Array:
    """The target ``⟨out_i, c_i⟩`` per row: its gradient is the VJP with cotangent ``c``."""
    return jnp.sum(out * cot, axis=1)


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1)


def _segment_vjp(
    tap: Callable, params: Any, x: jax.Array, src: str | None, dst: str | None, src_shape: tuple | None, cot: jax.Array
) -> jax.Array:
    """``J_{src→dst}ᵀ c``: the cotangent ``c`` on ``h_dst`` (``None``: the outputs) pulled back to ``h_src``
    (``None``: the input), as the gradient of the target ``⟨h_dst, c⟩``."""
    target = BoundTarget(_dot, _flat(cot), "vjp")

    def read(out, acts):
        return _flat(out if dst is None else acts[dst])

    if src is None:
        return target_and_grad(lambda p, v: read(*tap(p, v, {})), params, x, target)[1]

    def seg(p, v, deltas):
        out, acts = tap(p, v, deltas)
        return read(out, acts), acts

    return target_and_layer_grad(seg, params, x, target, layer=src, layer_shape=src_shape)[2]


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
    params: Any,
    x: Float[Array, " r *features"],
    target: BoundTarget,
    *,
    layers: tuple[str, ...],
    layer_shapes: tuple[tuple[int, ...], ...],
    singular_values: bool = True,
) -> tuple[jax.Array, list[jax.Array], list[jax.Array], jax.Array, jax.Array]:
    """Pure: the chain rule through ``layers`` next to the end-to-end gradient.

    Returns ``(t, chained, direct, sig_max, sig_min)``: ``chained`` and
    ``direct`` are lists over cuts ``[x, h_1 … h_L]`` of ``(R, *shape)``
    gradients; ``sig_*`` are ``(R, C)`` (NaN without ``singular_values``).
    """
    n = x.shape[0]
    # One backward pass to every layer and to the outputs (∇_out t), one to the input.
    k = jax.eval_shape(functools.partial(tap_apply, tap), params, x).shape[1]
    t, (*direct_h, g_out) = StackedTap(tap, layers, layer_shapes, outputs=True).grads(params, x, target, k)
    _, direct_x, _ = target_and_grad(functools.partial(tap_apply, tap), params, x, target)
    direct = [direct_x, *direct_h]

    # ∇_out t, then (optionally) the K unit cotangents that build ∂outputs/∂h row by row.
    cot = g_out[None]
    if singular_values:
        eye = jnp.broadcast_to(jnp.eye(k, dtype=g_out.dtype)[:, None, :], (k, n, k))
        cot = jnp.concatenate([cot, eye])  # (1 + K, R, K)

    points = [None, *layers]
    shapes = [None, *layer_shapes]
    chained: list[Any] = [None] * len(points)
    for i in range(len(points) - 1, -1, -1):
        src, dst = points[i], points[i + 1] if i + 1 < len(points) else None
        vjp = functools.partial(_segment_vjp, tap, params, x, src, dst, shapes[i])
        cot = jax.vmap(vjp)(cot)
        chained[i] = cot
    grads = [c[0] for c in chained]
    if singular_values:
        pairs = [_singular_range(c[1:]) for c in chained]
        sig_max = jnp.stack([q[0] for q in pairs], axis=1)
        sig_min = jnp.stack([q[1] for q in pairs], axis=1)
    else:
        sig_max = sig_min = jnp.full((n, len(points)), jnp.nan, x.dtype)
    return t, grads, direct, sig_max, sig_min


def chain_rows(
    tap: Callable,
    params: Any,
    x: Float[Array, " r *features"],
    target: BoundTarget,
    *,
    layers: tuple[str, ...],
    layer_shapes: tuple[tuple[int, ...], ...],
    singular_values: bool = True,
) -> tuple[jax.Array, ...]:
    """Pure, per row: ``(t, chained ∇_x, direct ∇_x, ‖chained - direct‖² (R, C), ‖direct‖² (R, C), σ_max, σ_min)``."""
    t, grads, direct, smax, smin = chained_vjps(
        tap, params, x, target, layers=layers, layer_shapes=layer_shapes, singular_values=singular_values
    )
    diff_sq = jnp.stack([jnp.sum(_flat(c - d) ** 2, axis=1) for c, d in zip(grads, direct)], axis=1)
    ref_sq = jnp.stack([jnp.sum(_flat(d) ** 2, axis=1) for d in direct], axis=1)
    return t, grads[0], direct[0], diff_sq, ref_sq, smax, smin


_chain_rows = jax.jit(chain_rows, static_argnums=0, static_argnames=("layers", "layer_shapes", "singular_values"))


# ----------------------------------------------------------------------------- public


def jacobian_chain(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    layers: str | Sequence[str] | None = None,
    singular_values: bool = True,
    rtol: float | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> JacobianChain:
    """Chains the local VJPs from the output back to the input and checks them against the end-to-end gradient.

    ``∇_x t = J_1ᵀ J_2ᵀ … J_{L+1}ᵀ ∇_out t`` with ``Jₗ = ∂hₗ/∂h_{l-1}``
    (primer, section 11). Each segment's VJP reruns the forward pass with a
    zero delta on its source layer, so the cost is about ``L + 1`` forward and
    backward passes, the backward passes times ``1 + K`` cotangents when
    ``singular_values``; rows are chunked within ``memory_budget``.

    Args:
      model: a tapped :class:`~explain.model.Model`.
      x: ``(N, *input_spec.shape)``.
      target, labels: as :func:`explain.gradient_flow` (the loss when labels are given).
      layers: the cuts, names from ``model.layer_names`` that form a chain (module
        doc of :mod:`explain.gradflow`); default the top-level layers; sorted into forward order.
      singular_values: also compute ``σ_max, σ_min`` of ``∂outputs/∂hₗ`` per sample.
      rtol: largest relative chain error accepted at any cut before raising;
        default ``1e-3`` for float32 and ``1e-8`` for float64 inputs.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).
      show_progress: a progress bar for long calls.

    Returns:
      :class:`JacobianChain`.

    Raises:
      ValueError: unknown layers, bad input (before compiling), or layers that are not a chain.

    Example:
      >>> ch = explain.jacobian_chain(m, x, labels=y)
      >>> ch.chain_error.max(), ch.sigma_max.mean(axis=0)
    """
    if rtol is not None:
        rtol = check_float("rtol", rtol, minimum=-np.inf)
        if not rtol > 0:
            raise ValueError(f"expected rtol > 0, got {rtol:g}")
    chunking.check_budget(memory_budget)
    singular_values = bool(singular_values)
    p, names, shapes = prepare_layers(
        model, x, target=target, labels=labels, layers=layers, memory_budget=memory_budget
    )
    if rtol is None:
        rtol = 1e-8 if p.x.dtype == np.float64 else 1e-3
    m = p.model
    # Each cut holds 1 + K cotangents (singular values) or the chained and the direct gradient.
    factor = 1 + m.num_outputs if singular_values else 2
    rows = chunking.rows_per_chunk(m, memory_budget=memory_budget, factor=factor, dtype=p.x.dtype)
    run = functools.partial(
        _chain_rows, m.tap, m.params, layers=names, layer_shapes=shapes, singular_values=singular_values
    )
    t, chained_x, direct_x, diff_sq, ref_sq, smax, smin = chunking.map_rows(
        run, p.x, p.target, batch=rows, show_progress=show_progress, desc="Jacobian chain"
    )
    tiny = np.finfo(ref_sq.dtype).tiny
    errs = np.sqrt(diff_sq.sum(axis=0)) / np.maximum(np.sqrt(ref_sq.sum(axis=0)), tiny)
    cuts = (INPUT, *names)
    # The chained gradient is carried from the output back, so the break is the last cut that fails.
    for i in range(len(errs) - 1, -1, -1):
        err = errs[i]
        if not err <= rtol:
            nxt = cuts[i + 1] if i + 1 < len(cuts) else "outputs"
            raise ValueError(_NOT_A_CHAIN.format(layers=list(names), cut=cuts[i], nxt=nxt, err=err, rtol=rtol))
    return JacobianChain(
        cuts=cuts,
        chained_input_grad=jnp.asarray(chained_x),
        direct_input_grad=jnp.asarray(direct_x),
        chain_error=jnp.asarray(errs),
        sigma_max=jnp.asarray(smax),
        sigma_min=jnp.asarray(smin),
        target_values=jnp.asarray(t),
        target_name=p.target.name,
    )
