"""Name -> shipped model: its module, dataset, checkpoint and training settings.

This is the one name -> object table for models; everything else passes
:class:`Bundle` or :class:`explain.Model` values.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

import explain
from models import checkpoint, names
from models.datasets import Dataset, load_dataset
from models.modules import CNN, MLP

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool = False  # dihedral flips/transposes, for images whose classes are symmetric


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    dataset: str
    make_module: Callable[[int], nn.Module]  # num_outputs -> module
    train: TrainConfig
    target_metric: str  # "accuracy" or "r2"
    target_value: float
    checkpoint_name: str | None = None  # defaults to name; variants share a module

    @property
    def checkpoint_path(self) -> Path:
        return CHECKPOINT_DIR / f"{self.checkpoint_name or self.name}.msgpack"


def _shapes_cnn(num_classes: int) -> CNN:
    return CNN(features=(16, 32, 64, 64), hidden=64, num_classes=num_classes)


SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "shapes_cnn",
            "shapes",
            _shapes_cnn,
            TrainConfig(epochs=20, batch_size=64, learning_rate=3e-3, augment=True),
            "accuracy",
            0.97,
        ),
        ModelSpec(  # adversarially fine-tuned twin of shapes_cnn, see its metadata for the command
            "shapes_cnn_robust",
            "shapes",
            _shapes_cnn,
            TrainConfig(epochs=10, batch_size=64, learning_rate=1e-3, augment=True),  # fine-tuned, see metadata
            "accuracy",
            0.90,
            checkpoint_name="shapes_cnn_robust",
        ),
        ModelSpec(
            "digits_cnn",
            "digits",
            lambda k: CNN(features=(32, 64), hidden=128, num_classes=k),
            TrainConfig(epochs=40, batch_size=32, learning_rate=2e-3),
            "accuracy",
            0.97,
        ),
        ModelSpec(
            "breast_cancer_mlp",
            "breast_cancer",
            lambda k: MLP(hidden=(32, 16), num_outputs=k),
            TrainConfig(epochs=60, batch_size=32, learning_rate=1e-3, weight_decay=1e-3),
            "accuracy",
            0.95,
        ),
        ModelSpec(
            "friedman1_mlp",
            "friedman1",
            lambda k: MLP(hidden=(64, 64), num_outputs=k),
            TrainConfig(epochs=150, batch_size=64, learning_rate=3e-3),
            "r2",
            0.90,
        ),
    )
}

IMAGE_MODELS = tuple(n for n, s in SPECS.items() if s.dataset in ("shapes", "digits"))
TABULAR_MODELS = tuple(n for n, s in SPECS.items() if n not in IMAGE_MODELS)
if (IMAGE_MODELS, TABULAR_MODELS) != (names.IMAGE_NAMES, names.TABULAR_NAMES):  # pragma: no cover - a dev error
    raise ImportError(f"models/names.py lists {names.NAMES}, the registry {tuple(SPECS)}: keep them equal")


@dataclasses.dataclass(frozen=True, eq=False)
class Bundle:
    """A shipped model with its data: ``model`` (an :class:`explain.Model`), ``dataset``, ``metadata``."""

    name: str
    model: explain.Model
    dataset: Dataset
    metadata: dict
    spec: ModelSpec


def get_spec(name: str) -> ModelSpec:
    if name not in SPECS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(SPECS)}")
    return SPECS[name]


def num_outputs(ds: Dataset) -> int:
    return len(ds.class_names) if ds.kind == "classification" else 1


def abstract_variables(spec: ModelSpec, ds: Dataset):
    """The module's variables as shapes and dtypes only (``jax.eval_shape`` of ``init``)."""
    module = spec.make_module(num_outputs(ds))
    x = jnp.zeros((1, *ds.input_shape), jnp.float32)
    return module, jax.eval_shape(lambda: module.init(jax.random.key(0), x))


def wrap(spec: ModelSpec, ds: Dataset, module: nn.Module, variables) -> explain.Model:
    return explain.from_linen(
        module,
        variables,
        input_shape=ds.input_shape,
        output_kind=ds.kind,
        class_names=ds.class_names,
        value_range=ds.value_range,
        feature_names=ds.feature_names,
        name=spec.name,
    )


@functools.cache
def load(name: str, *, checkpoint_path: Path | None = None) -> Bundle:
    """Loads a shipped model, validated against its module's shapes and its metadata's sha256.

    Raises:
      ValueError: unknown name (listing the known ones).
      models.checkpoint.CheckpointError: missing, corrupted or mismatched checkpoint.
    """
    spec = get_spec(name)
    ds = load_dataset(spec.dataset, seed=0)
    module, template = abstract_variables(spec, ds)
    path = Path(checkpoint_path) if checkpoint_path else spec.checkpoint_path
    variables, meta = checkpoint.load(path, template, model=spec.name)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    return Bundle(name=name, model=wrap(spec, ds, module, variables), dataset=ds, metadata=meta, spec=spec)
