"""The user's models, as Flax's own examples write them, and the two factories ``explain`` loads.

``CNN`` is Flax's NNX MNIST example shrunk to 16x16 RGB: BatchNorm, Dropout that draws from ``rngs``
passed to ``__call__``. ``MLP`` is a linen module whose ``train`` flag switches BatchNorm and Dropout.
Weights are read from ``weights/`` (written by :mod:`usermodels.train`) with Flax's msgpack, no pickle.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx, serialization

import explain
from usermodels import data

WEIGHTS = Path(__file__).parent / "weights"


class CNN(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3, 8, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(8, rngs=rngs)
        self.dropout1 = nnx.Dropout(rate=0.025)
        self.conv2 = nnx.Conv(8, 16, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(16, rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(16 * 4 * 4, 32, rngs=rngs)
        self.dropout2 = nnx.Dropout(rate=0.025)
        self.linear2 = nnx.Linear(32, len(data.CLASSES), rngs=rngs)

    def __call__(self, x, rngs):
        x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x), rngs=rngs))))
        x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dropout2(self.linear1(x), rngs=rngs))
        return self.linear2(x)


class MLP(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(self.hidden)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(len(data.LEVELS))(x)


def mlp_variables(seed: int = 0) -> Any:
    return MLP().init(jax.random.key(seed), jnp.zeros((1, len(data.FEATURES))), train=False)


def load_cnn() -> CNN:
    model = CNN(rngs=nnx.Rngs(0))
    state = serialization.msgpack_restore((WEIGHTS / "cnn.msgpack").read_bytes())
    nnx.update(model, nnx.State(state) if not isinstance(state, nnx.State) else state)
    return model


def load_mlp_variables() -> Any:
    return serialization.from_bytes(mlp_variables(), (WEIGHTS / "mlp.msgpack").read_bytes())


@dataclasses.dataclass(frozen=True)
class Bundle:
    model: explain.Model
    dataset: data.Splits
    class_names: tuple[str, ...]
    name: str


def cnn_in_training_mode() -> explain.Model:
    """The mistake a user makes first: the model straight out of training (BatchNorm batch statistics)."""
    return explain.from_nnx(load_cnn(), input_shape=(16, 16, 3), call_args=(nnx.Rngs(0),))


def cnn() -> Bundle:
    model = load_cnn()
    model.eval()
    wrapped = explain.from_nnx(
        model,
        input_shape=(16, 16, 3),
        call_args=(nnx.Rngs(0),),
        class_names=data.CLASSES,
        value_range=(0.0, 1.0),
        name="user_cnn",
    )
    return Bundle(wrapped, data.image_splits(), data.CLASSES, "user_cnn")


def mlp() -> Bundle:
    wrapped = explain.from_linen(
        MLP(),
        load_mlp_variables(),
        input_shape=(len(data.FEATURES),),
        call_kwargs={"train": False},
        class_names=data.LEVELS,
        feature_names=data.FEATURES,
        value_range=(0.0, 1.0),
        name="user_mlp",
    )
    return Bundle(wrapped, data.row_splits(), data.LEVELS, "user_mlp")
