"""Grad-CAM and Guided Grad-CAM on any named layer (default: the last convolutional layer).

For a layer with activations ``A (h, w, c)``:

    α_c = mean_{i,j} ∂F/∂A_{ijc},   CAM = ReLU(Σ_c α_c A_c)   (h, w)

upsampled bilinearly to the input's ``(H, W)`` and repeated over its channels,
so ``values`` is shaped like ``x``. Guided Grad-CAM multiplies Guided Backprop
by the upsampled CAM. The layer is reached through the model's ``tap``
(:mod:`explain.adapters`), so the model is not edited.

References:
  Selvaraju et al. Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization. ICCV 2017.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from explain import gradients
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency import guided as guided_lib
from explain.saliency.attribution import Attribution
from explain.targets import TargetFn


def default_layer(model: Model) -> str:
    """The last layer with a spatial ``(h, w, c)`` activation; of a block and its inner conv, the block
    (its output is the rectified map Grad-CAM expects)."""
    if model.tap is None:
        raise ValueError(f"model {model.name!r} exposes no layers; wrap it with explain.from_linen or from_nnx")
    shapes = model.layer_shapes
    spatial = [n for n in model.layer_names if len(shapes.get(n, ())) == 3]
    if not spatial:
        raise ValueError(f"Grad-CAM needs a layer with (h, w, c) activations; model {model.name!r} has none: {shapes}")
    last = spatial[-1]
    parents = [n for n in spatial if last.startswith(n + "/") and shapes[n] == shapes[last]]
    return parents[0] if parents else last


def _check_layer(model: Model, layer: str | None) -> str:
    common.check_image(model, what="Grad-CAM")
    layer = default_layer(model) if layer is None else layer
    model.check_layer(layer)
    if len(model.layer_shapes[layer]) != 3:
        raise ValueError(
            f"Grad-CAM needs a layer with (h, w, c) activations; {layer!r} has shape {model.layer_shapes[layer]}"
        )
    return layer


def _layer_grad_all(tap: Callable, params: Any, x: jax.Array, layer: str, layer_shape: tuple[int, ...]):
    """``(h_l (N, 1, h', w', c'), ∂out_k/∂h_l (N, K, h', w', c'))``: K backward passes sharing one forward pass."""

    def f(delta):
        out, acts = tap(params, x, {layer: delta})
        return out, acts[layer]

    out, vjp, act = jax.vjp(f, jnp.zeros((x.shape[0], *layer_shape), x.dtype), has_aux=True)
    return act[:, None], common.all_classes_vjp(vjp, out)


@functools.cache
def _compiled_cam(tap: Callable, fn: TargetFn | None, layer: str, layer_shape: tuple[int, ...]):
    def run(params, x, aux):
        h, w = x.shape[1:3]
        if fn is None:
            act, g = _layer_grad_all(tap, params, x, layer, layer_shape)
        else:
            _, act, g, _ = gradients.target_and_layer_grad(tap, fn, params, x, aux, layer, layer_shape)
        alpha = g.mean(axis=(-3, -2), keepdims=True)  # (..., 1, 1, c')
        cam = jax.nn.relu((alpha * act).sum(-1))  # (N, [K,] h', w')
        up = jax.image.resize(cam, (*cam.shape[:-2], h, w), "bilinear")
        return jnp.broadcast_to(up[..., None], (*up.shape, x.shape[-1]))

    return jax.jit(run)


def _cam_values(
    r: common.Resolved, layer: str, *, internal_batch_size: int | None = None, memory_budget: int | None = None
) -> jax.Array:
    """The upsampled CAM of a resolved batch, in chunks of samples bounded like every other method."""
    rows = common.chunk_rows(r, memory_budget, internal_batch_size)
    run = functools.partial(_compiled_cam(r.model.tap, r.fn, layer, r.model.layer_shapes[layer]), r.model.params)
    return common.map_rows(run, r.x, r.aux, batch=rows)


def grad_cam(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    layer: str | None = None,
    internal_batch_size: int | None = None,
    memory_budget: int | None = None,
) -> Attribution:
    """Grad-CAM of ``layer`` (default :func:`default_layer`), upsampled to the input size.

    Args:
      model: an image :class:`~explain.model.Model` with layer access (contract in :mod:`explain.model`).
      x: ``(N, H, W, C)``.
      target: see :mod:`explain.targets`, or ``"all"`` (values ``(N, K, H, W, C)``).
      layer: a name in ``model.layer_names`` with ``(h, w, c)`` activations.
      internal_batch_size: samples per compiled call; default from ``memory_budget`` (bytes, default
        256 MiB; ``target="all"`` counts ``K`` backward passes per sample).

    Returns:
      :class:`Attribution` shaped like ``x`` (the map repeated over channels), ``>= 0``.

    Raises:
      ValueError: unknown layer (naming the known ones), a non-spatial layer, a non-image model.
    """
    layer = _check_layer(as_model(model), layer)
    common.check_chunking(internal_batch_size, memory_budget)
    r = common.resolve(model, x, target, labels)
    values = _cam_values(r, layer, internal_batch_size=internal_batch_size, memory_budget=memory_budget)
    return Attribution(values, f"grad_cam[{layer}]", r.name)


def guided_grad_cam(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    layer: str | None = None,
    internal_batch_size: int | None = None,
    memory_budget: int | None = None,
) -> Attribution:
    """Guided Grad-CAM: Guided Backprop ⊙ the upsampled Grad-CAM. Args as :func:`grad_cam`
    (the chunking options bound the Grad-CAM part)."""
    layer = _check_layer(as_model(model), layer)
    common.check_chunking(internal_batch_size, memory_budget)
    r = common.resolve(model, x, target, labels, freeze=False)
    r = common.freeze_pred(guided_lib._check_relus(r))  # one resolution: both maps explain the same class
    gb = guided_lib.modified_backprop_values(r, "guided")
    cam = _cam_values(r, layer, internal_batch_size=internal_batch_size, memory_budget=memory_budget)
    return Attribution(gb * cam, f"guided_grad_cam[{layer}]", r.name)
