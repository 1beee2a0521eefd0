"""The one model contract: a pure apply function, its params, and what it expects.

Every method in `explain` sees a :class:`Model` and nothing else. Flax specifics
live in :mod:`explain.adapters`; a user's own linen or NNX model is wrapped there
without being edited.

Contract (referenced by every method's docstring, written once here):

* ``apply(params, x)`` is pure, batch axis first: ``x`` of shape
  ``(N, *input_spec.shape)`` gives outputs of shape ``(N, K)`` (class logits
  for classification, ``K`` outputs for regression). Samples do not interact
  (no batch statistics), so one backward pass over a batch yields every
  sample's gradient.
* ``tap(params, x, deltas)`` runs the same forward pass but adds
  ``deltas[name]`` to the output of each named layer and returns
  ``(outputs, activations)`` with the unperturbed activations. The gradient
  with respect to a zero delta is the gradient with respect to that layer's
  activations (the chain rule's ∂L/∂hₗ), obtained without editing the model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from explain.checks import input_dtype

OutputKind = Literal["classification", "regression"]
Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]
TapFn = Callable[[Params, jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]

_RANGE_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What one sample looks like.

    Attributes:
      shape: per-sample shape, e.g. ``(64, 64, 3)`` or ``(30,)``.
      value_range: declared ``(low, high)`` of valid inputs, or ``None``.
      feature_names: one name per feature for tabular inputs (``shape == (F,)``).
    """

    shape: tuple[int, ...]
    value_range: tuple[float, float] | None = None
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.feature_names is not None and (len(self.shape) != 1 or len(self.feature_names) != self.shape[0]):
            raise ValueError(
                f"feature_names has {len(self.feature_names)} names but the input shape is {self.shape}; "
                "expected one name per feature of a 1-D input."
            )

    @property
    def is_tabular(self) -> bool:
        return len(self.shape) == 1

    def describe(self) -> str:
        rng = "" if self.value_range is None else f" in [{self.value_range[0]:g}, {self.value_range[1]:g}]"
        return f"(N, {', '.join(map(str, self.shape))}){rng}"

    def validate(self, x: Any, *, name: str = "x", check_range: bool = True) -> np.ndarray | jax.Array:
        """Checks a batch against the spec before any compilation.

        Args:
          x: array-like of shape ``(N, *shape)``, floating dtype.
          name: the argument's name, used in error messages.
          check_range: warn when values leave ``value_range``.

        Returns:
          ``x`` in the dtype of :func:`explain.checks.input_dtype`; a NumPy array stays a
          NumPy array (not copied to the device as a whole), anything else becomes a JAX array.

        Raises:
          TypeError: a dtype :func:`explain.checks.input_dtype` refuses.
          ValueError: wrong rank or shape, empty batch, NaN or inf.
        """
        arr = x if isinstance(x, (jax.Array, np.ndarray)) else np.asarray(x)
        expected = self.describe()
        if arr.ndim != len(self.shape) + 1:
            hint = " (add a batch axis: x[None])" if arr.ndim == len(self.shape) else ""
            raise ValueError(f"expected {name} of shape {expected}, got shape {tuple(arr.shape)}{hint}")
        if tuple(arr.shape[1:]) != self.shape:
            raise ValueError(f"expected {name} of shape {expected}, got shape {tuple(arr.shape)}")
        if arr.shape[0] == 0:
            raise ValueError(f"expected {name} of shape {expected} with N >= 1, got an empty batch")
        dtype = input_dtype(arr.dtype, name=name)
        host = np.asarray(arr)
        finite = np.isfinite(host)
        if not finite.all():
            bad = np.argwhere(~finite.reshape(host.shape[0], -1).all(axis=1)).ravel()
            raise ValueError(
                f"expected finite values in {name}, got NaN or inf in {bad.size} sample(s), first at index {bad[0]}"
            )
        if check_range and self.value_range is not None:
            lo, hi = self.value_range
            mn, mx = float(host.min()), float(host.max())
            if mn < lo - _RANGE_TOL or mx > hi + _RANGE_TOL:
                warnings.warn(
                    f"{name} has values in [{mn:.4g}, {mx:.4g}], outside the declared range [{lo:g}, {hi:g}]",
                    stacklevel=3,
                )
        # Host arrays stay on the host (chunked calls copy one chunk at a time to the device).
        return arr.astype(dtype, copy=False) if isinstance(arr, np.ndarray) else jnp.asarray(arr, dtype)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A pure apply function plus params and its input contract (see module doc).

    Hashes by identity, so compiled functions can be cached per model.

    Attributes:
      apply: ``(params, x (N, *shape)) -> outputs (N, K)``.
      params: the parameter pytree passed to ``apply``.
      input_spec: the per-sample shape, value range and feature names.
      output_kind: ``"classification"`` (outputs are logits) or ``"regression"``.
      class_names: ``K`` names for classification, else ``None``.
      tap: optional ``(params, x, deltas) -> (outputs, activations)`` for layer access.
      layer_names: the names ``tap`` accepts, in forward order.
      name: a label for reports.
      origin: ``"python"`` (built from code), or ``"export"`` for a :mod:`jax.export` artifact
        (:func:`explain.exported.load`), which carries no layer structure.
    """

    apply: ApplyFn
    params: Params
    input_spec: InputSpec
    output_kind: OutputKind = "classification"
    class_names: tuple[str, ...] | None = None
    tap: TapFn | None = None
    layer_names: tuple[str, ...] = ()
    name: str = "model"
    origin: str = "python"

    def __post_init__(self):
        if self.output_kind not in ("classification", "regression"):
            raise ValueError(f"expected output_kind 'classification' or 'regression', got {self.output_kind!r}")

    @functools.cached_property
    def num_outputs(self) -> int:
        """``K``, read from the model's own output shape (never assumed)."""
        x = jax.ShapeDtypeStruct((1, *self.input_spec.shape), jnp.float32)
        out = jax.eval_shape(self.apply, self.params, x)
        if len(out.shape) != 2:
            raise ValueError(f"expected apply to return outputs of shape (N, K), got {out.shape}")
        return int(out.shape[1])

    @functools.cached_property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample activation shape of every tappable layer."""
        if self.tap is None:
            return {}
        x = jax.ShapeDtypeStruct((1, *self.input_spec.shape), jnp.float32)
        _, acts = jax.eval_shape(lambda p, x: self.tap(p, x, {}), self.params, x)
        return {k: tuple(v.shape[1:]) for k, v in acts.items()}

    def check_tap(self, method: str) -> None:
        """Raises ``ValueError`` saying why when ``method`` needs layer taps and this model is an artifact.

        A :mod:`jax.export` artifact keeps only the function: no layers to tap and no ReLUs to rewrite.
        """
        if self.tap is None and self.origin == "export":
            raise ValueError(
                f"model {self.name!r} is a jax.export artifact: it keeps no layer structure (no layers to tap, "
                f"no ReLUs to rewrite), so {method} cannot run on it; use the model's Python spec"
            )

    def check_layer(self, layer: str, *, method: str = "layer_gradients") -> None:
        """Raises ``ValueError`` naming the known layers when ``layer`` is unknown."""
        if self.tap is None:
            self.check_tap(method)
            raise ValueError(f"model {self.name!r} exposes no layers; wrap it with explain.from_linen or from_nnx")
        if layer not in self.layer_names:
            raise ValueError(
                f"unknown layer {layer!r} for model {self.name!r}; expected one of {list(self.layer_names)}"
            )

    def num_params(self) -> int:
        return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(self.params)))


class HasModel(Protocol):
    model: Model


def as_model(obj: Any) -> Model:
    """Returns the :class:`Model` itself, or the ``.model`` of a bundle such as ``models.load(...)``."""
    if isinstance(obj, Model):
        return obj
    inner = getattr(obj, "model", None)
    if isinstance(inner, Model):
        return inner
    raise TypeError(
        f"expected an explain.Model (or an object with a .model attribute), got {type(obj).__name__}; "
        "wrap a Flax model with explain.from_linen(module, variables, ...) or explain.from_nnx(module, ...)"
    )
