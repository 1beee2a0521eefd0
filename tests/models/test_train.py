"""Training is deterministic and learns; a few steps only (the shipped models are trained offline)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from models import checkpoint
from models.datasets import load_dataset
from models.registry import get_spec
from models.train import dihedral_augment, metadata, train


def _quick(name, epochs=2):
    spec = get_spec(name)
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=epochs)), load_dataset(spec.dataset)


def test_training_is_deterministic_and_beats_chance():
    spec, ds = _quick("breast_cancer_mlp", epochs=3)
    v1, m1 = train(spec, ds, progress=False)
    v2, m2 = train(spec, ds, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(v1), jax.tree_util.tree_leaves(v2)):
        np.testing.assert_array_equal(a, b)
    assert m1 == m2 and m1["test_accuracy"] > 0.8


def test_checkpoint_written_by_training_loads_back(tmp_path):
    spec, ds = _quick("friedman1_mlp", epochs=1)
    variables, metrics = train(spec, ds, progress=False)
    meta = checkpoint.save(tmp_path / "f.msgpack", variables, metadata(spec, ds, variables, metrics, 0.0))
    template = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
    restored, meta2 = checkpoint.load(tmp_path / "f.msgpack", template)
    assert meta2 == meta and meta["dataset_split_hashes"] == ds.split_hashes()


def test_dihedral_augment_only_permutes_pixels(key):
    x = jax.random.uniform(key, (16, 6, 6, 2))
    y = dihedral_augment(x, jax.random.key(3))
    np.testing.assert_allclose(jnp.sort(y.reshape(16, -1), axis=1), jnp.sort(x.reshape(16, -1), axis=1))
    assert not np.allclose(x, y)
