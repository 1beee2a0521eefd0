"""The Flax (linen) modules the service ships.

linen, not NNX: a linen module is a pure ``apply(variables, x)``, which is
exactly the :class:`explain.Model` contract, so the shipped models need no
state splitting and their variables serialise as a plain dict. NNX user
models are supported through :func:`explain.from_nnx`.

Every block is a named submodule, so its output (after the ReLU) is a layer
that :func:`explain.layer_gradients` and Grad-CAM can address.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max-pool as a reshape and a max: ``(N, H, W, C) -> (N, H/2, W/2, C)``.

    On XLA CPU the backward of this form is about twice as fast as
    ``reduce_window`` (``nn.max_pool``).
    """
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class ConvBlock(nn.Module):
    """3×3 convolution followed by a ReLU; its output is the block's activation map."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.relu(nn.Conv(self.features, (3, 3), padding="SAME", name="conv")(x))


class DenseBlock(nn.Module):
    """Dense layer followed by an activation."""

    features: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return getattr(jax.nn, self.activation)(nn.Dense(self.features, name="dense")(x))


class CNN(nn.Module):
    """Conv blocks, each followed by a 2×2 max-pool, then global mean and max pooling (concatenated) and a dense head.

    ``(N, H, W, C) -> (N, num_classes)`` logits.
    """

    features: Sequence[int]
    hidden: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, f in enumerate(self.features):
            x = ConvBlock(f, name=f"block{i + 1}")(x)
            x = max_pool_2x2(x)
        x = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
        x = DenseBlock(self.hidden, name="fc")(x)
        return nn.Dense(self.num_classes, name="head")(x)


class MLP(nn.Module):
    """Dense blocks with a smooth activation (so second derivatives are informative).

    ``(N, F) -> (N, num_outputs)``.
    """

    hidden: Sequence[int]
    num_outputs: int
    activation: str = "silu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, h in enumerate(self.hidden):
            x = DenseBlock(h, self.activation, name=f"fc{i + 1}")(x)
        return nn.Dense(self.num_outputs, name="head")(x)
