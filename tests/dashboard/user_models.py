"""A user's models as a user writes them, for the dashboard's ``--model path/to/file.py:factory`` tests.

This file is copied into a temporary folder and named by a spec there (the dashboard imports it through
:func:`explain.specs.resolve`, as it would a user's file); it is not imported from the tests package.
Random initialisation: the pages are tested for what they show, not for what the models learned.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

import explain

IMAGE_SHAPE = (16, 16, 3)
FEATURES = ("age", "dose", "weight", "score")


class TinyCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))


class TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, name="out")(nn.tanh(nn.Dense(8, name="hidden")(x)))


def cnn():
    """An image classifier on 16x16 RGB in [0, 1], three classes without names."""
    module = TinyCNN()
    variables = module.init(jax.random.key(0), jnp.zeros((1, *IMAGE_SHAPE)))
    return explain.from_linen(module, variables, input_shape=IMAGE_SHAPE, value_range=(0.0, 1.0), name="tiny_cnn")


def mlp():
    """A tabular classifier on four named features."""
    module = TinyMLP()
    variables = module.init(jax.random.key(1), jnp.zeros((1, len(FEATURES))))
    return explain.from_linen(
        module, variables, input_shape=(len(FEATURES),), feature_names=FEATURES, class_names=("no", "yes"),
        name="tiny_mlp",
    )  # fmt: skip


def broken():
    """A factory that fails the way a missing checkpoint does, naming a server path."""
    raise FileNotFoundError("/srv/secret/deploy/weights/tiny.msgpack: checkpoint file not found")
