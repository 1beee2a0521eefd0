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


@functools.cache
def _compiled_cam(tap: Callable, fn: TargetFn | None, layer: str, layer_shape: tuple[int, ...]):
    def run(params, x, aux):
        n, h, w = x.shape[:3]

        def f(delta):
            out, acts = tap(params, x, {layer: delta})
            return out, acts[layer]

        out, vjp, act = jax.vjp(f, jnp.zeros((n, *layer_shape), x.dtype), has_aux=True)
        if fn is None:  # every class: K backward passes sharing one forward pass
            k = out.shape[1]
            cot = jnp.broadcast_to(jnp.eye(k, dtype=out.dtype)[:, None, :], (k, *out.shape))
            g = jnp.moveaxis(jax.vmap(vjp)(cot)[0], 0, 1)  # (N, K, h', w', c')
            act = act[:, None]
        else:
            _, fvjp = jax.vjp(lambda o: fn(o, aux), out)
            (g,) = vjp(fvjp(jnp.ones((n,), out.dtype))[0])  # (N, h', w', c')
        alpha = g.mean(axis=(-3, -2), keepdims=True)  # (..., 1, 1, c')
        cam = jax.nn.relu((alpha * act).sum(-1))  # (N, [K,] h', w')
        up = jax.image.resize(cam, (*cam.shape[:-2], h, w), "bilinear")
        return jnp.broadcast_to(up[..., None], (*up.shape, x.shape[-1]))

    return jax.jit(run)


def _cam_values(r: common.Resolved, layer: str) -> jax.Array:
    run = _compiled_cam(r.model.tap, r.fn, layer, r.model.layer_shapes[layer])
    return run(r.model.params, r.x, r.aux)


def grad_cam(
    model: Model | Any, x: Any, *, target: Any = None, labels: Any = None, layer: str | None = None
) -> Attribution:
    """Grad-CAM of ``layer`` (default :func:`default_layer`), upsampled to the input size.

    Args:
      model: an image :class:`~explain.model.Model` with layer access (contract in :mod:`explain.model`).
      x: ``(N, H, W, C)``.
      target: see :mod:`explain.targets`, or ``"all"`` (values ``(N, K, H, W, C)``).
      layer: a name in ``model.layer_names`` with ``(h, w, c)`` activations.

    Returns:
      :class:`Attribution` shaped like ``x`` (the map repeated over channels), ``>= 0``.

    Raises:
      ValueError: unknown layer (naming the known ones), a non-spatial layer, a non-image model.
    """
    layer = _check_layer(as_model(model), layer)
    r = common.resolve(model, x, target, labels)
    return Attribution(_cam_values(r, layer), f"grad_cam[{layer}]", r.name)


def guided_grad_cam(
    model: Model | Any, x: Any, *, target: Any = None, labels: Any = None, layer: str | None = None
) -> Attribution:
    """Guided Grad-CAM: Guided Backprop ⊙ the upsampled Grad-CAM. Args as :func:`grad_cam`."""
    layer = _check_layer(as_model(model), layer)
    r = common.resolve(model, x, target, labels, freeze=False)
    r = common.freeze_pred(guided_lib._check_relus(r))  # one resolution: both maps explain the same class
    gb = guided_lib.modified_backprop_values(r, "guided")
    return Attribution(gb * _cam_values(r, layer), f"guided_grad_cam[{layer}]", r.name)
