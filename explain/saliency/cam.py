"""Grad-CAM and Guided Grad-CAM on any named layer (default: the last convolutional layer).

For a layer with activations ``A (h, w, c)``:

    α_c = mean_{i,j} ∂F/∂A_{ijc},   CAM = ReLU(Σ_c α_c A_c)   (h, w)

upsampled bilinearly to the input's ``(H, W)`` and repeated over its channels,
so ``values`` is shaped like ``x``. Guided Grad-CAM multiplies Guided Backprop
by the upsampled CAM. The layer is reached through the model's ``tap``
(:mod:`explain.adapters`) with :func:`explain.gradients.target_and_layer_grad`,
so the model is not edited.

Both cores take the tap alone: by the model contract (:mod:`explain.model`)
``tap(params, x, {})`` runs the same forward pass as ``apply`` and returns its
outputs first, so Guided Grad-CAM rewrites the ReLUs of that forward pass
(:class:`TapOutputs`) for its Guided Backprop half. One function per core keeps
the registry's and the noise tunnel's ``uses_tap`` protocol unchanged.

References:
  Selvaraju et al. Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization. ICCV 2017.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from explain.arrays import Batch
from explain.gradients import prepare, target_and_layer_grad
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency import guided as guided_lib
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget


def default_layer(model: Model) -> str:
    """The last layer with a spatial ``(h, w, c)`` activation; of a block and its inner conv, the block
    (its output is the rectified map Grad-CAM expects)."""
    if model.tap is None:
        model.check_tap("Grad-CAM")
        raise ValueError(f"model {model.name!r} exposes no layers; wrap it with explain.from_linen or from_nnx")
    shapes = model.layer_shapes
    spatial = [n for n in model.layer_names if len(shapes.get(n, ())) == 3]
    if not spatial:
        raise ValueError(f"Grad-CAM needs a layer with (h, w, c) activations; model {model.name!r} has none: {shapes}")
    last = spatial[-1]
    parents = [n for n in spatial if last.startswith(n + "/") and shapes[n] == shapes[last]]
    return parents[0] if parents else last


def check_layer(model: Model, layer: str | None) -> str:
    """``layer`` (default :func:`default_layer`) after checking the model takes images and the layer is spatial."""
    common.check_image(model, what="Grad-CAM")
    layer = default_layer(model) if layer is None else layer
    model.check_layer(layer)
    if len(model.layer_shapes[layer]) != 3:
        raise ValueError(
            f"Grad-CAM needs a layer with (h, w, c) activations; {layer!r} has shape {model.layer_shapes[layer]}"
        )
    return layer


def core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    """The cores' ``layer`` and ``layer_shape`` from the wrapper's ``layer`` option (``None``: the default layer).

    The registry's ``core_options`` hook of :func:`grad_cam`; checks run on the host, before compilation.
    """
    layer = check_layer(model, options.get("layer"))
    return {"layer": layer, "layer_shape": tuple(model.layer_shapes[layer])}


def guided_core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`core_options` plus the ReLU check of Guided Backprop: the registry hook of :func:`guided_grad_cam`."""
    kwargs = core_options(model, options)
    guided_lib.check_relus(model, TapOutputs(model.tap))
    return kwargs


@dataclasses.dataclass(frozen=True)
class TapOutputs:
    """``tap(params, x, {})[0]``: the model's outputs through its tap, a pure ``(params, x) -> outputs``."""

    tap: Callable

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        return self.tap(params, x, {})[0]


# ----------------------------------------------------------------------------- pure cores


def _upsampled_cam(act: jax.Array, g: jax.Array, x: jax.Array) -> jax.Array:
    """``ReLU(Σ_c mean_ij(g)_c A_c)`` resized to ``x``'s ``(H, W)`` and repeated over its channels."""
    h, w = x.shape[1:3]
    alpha = g.mean(axis=(-3, -2), keepdims=True)  # (N, [K,] 1, 1, c')
    cam = jax.nn.relu((alpha * common.expand_like(act, g)).sum(-1))  # (N, [K,] h', w')
    up = jax.image.resize(cam, (*cam.shape[:-2], h, w), "bilinear")
    return jnp.broadcast_to(up[..., None], (*up.shape, x.shape[-1]))


def grad_cam_core(
    tap: Callable,
    params: Any,
    x: Float[Array, " n h w c"],
    target: BoundTarget,
    *,
    layer: str,
    layer_shape: tuple[int, ...],
) -> Attribution:
    """Pure: the upsampled Grad-CAM of ``layer`` (activations ``(h', w', c') = layer_shape``), shaped like ``x``
    (``(N, K, H, W, C)`` for ``target="all"``), ``>= 0``."""
    _, act, g, _ = target_and_layer_grad(tap, params, x, target, layer=layer, layer_shape=layer_shape)
    return Attribution(_upsampled_cam(act, g, x), "grad_cam", target.name)


def guided_grad_cam_core(
    tap: Callable,
    params: Any,
    x: Float[Array, " n h w c"],
    target: BoundTarget,
    *,
    layer: str,
    layer_shape: tuple[int, ...],
) -> Attribution:
    """Pure: Guided Backprop (through the tap's forward pass, :class:`TapOutputs`) ⊙ the upsampled Grad-CAM."""
    gb = guided_lib.guided_backprop_core(TapOutputs(tap), params, x, target).values
    cam = grad_cam_core(tap, params, x, target, layer=layer, layer_shape=layer_shape).values
    return Attribution(gb * cam, "guided_grad_cam", target.name)


_grad_cam = jax.jit(grad_cam_core, static_argnums=0, static_argnames=("layer", "layer_shape"))
_guided_grad_cam = jax.jit(guided_grad_cam_core, static_argnums=0, static_argnames=("layer", "layer_shape"))


# ----------------------------------------------------------------------------- public


def grad_cam(
    model: Model | Any,
    x: Batch,
    *,
    layer: str | None = None,
    target: Any = None,
    labels: Any = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Grad-CAM of ``layer`` (default :func:`default_layer`), upsampled to the input size.

    ``layer``: a name in ``model.layer_names`` with ``(h, w, c)`` activations, of an image model
    with layer access. Values ``>= 0``, shaped like ``x`` (the map repeated over channels).
    Raises ``ValueError`` before compilation for an unknown layer (naming the known ones), a
    non-spatial layer or a non-image model.

    Example:
      >>> grad_cam(m, x, target=3, layer="conv2").values.shape == x.shape
    """
    m = as_model(model)
    kwargs = core_options(m, {"layer": layer})
    p = prepare(m, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
    a = common.run_rows(_grad_cam, p, memory_budget=memory_budget, show_progress=show_progress, uses_tap=True, **kwargs)
    return common.to_attribution(a)


def guided_grad_cam(
    model: Model | Any,
    x: Batch,
    *,
    layer: str | None = None,
    target: Any = None,
    labels: Any = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Guided Grad-CAM: Guided Backprop ⊙ the upsampled Grad-CAM, both of the same target.

    As :func:`grad_cam`; also raises ``ValueError`` when the model has no ``jax.nn.relu``.
    """
    m = as_model(model)
    kwargs = guided_core_options(m, {"layer": layer})
    p = prepare(m, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
    a = common.run_rows(
        _guided_grad_cam, p, memory_budget=memory_budget, show_progress=show_progress, uses_tap=True, **kwargs
    )
    return common.to_attribution(a)
