"""Every shipped checkpoint loads, validates, and meets its target on its test split."""

import numpy as np
import pytest

import models
from models.registry import SPECS, get_spec
from models.train import metric, predict

SHIPPED = sorted(SPECS)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_meets_its_target_on_the_test_split(name):
    bundle = models.load(name)
    spec = bundle.spec
    ds = bundle.dataset
    out = np.concatenate(
        [
            np.asarray(bundle.model.apply(bundle.model.params, ds.test.x[i : i + 250]))
            for i in range(0, len(ds.test), 250)
        ]
    )
    value = metric(ds.kind, out, ds.test.y)
    assert value >= spec.target_value, f"{name}: test {spec.target_metric} {value:.4f} < {spec.target_value}"
    recorded = bundle.metadata["metrics"][f"test_{spec.target_metric}"]
    assert abs(value - recorded) < 1e-6, "metadata disagrees with a re-evaluation"


@pytest.mark.parametrize("name", SHIPPED)
def test_metadata_records_data_and_provenance(name):
    bundle = models.load(name)
    meta = bundle.metadata
    assert meta["dataset"] == bundle.dataset.name
    assert meta["dataset_split_hashes"]["test"] == bundle.dataset.split_hashes()["test"]
    assert meta["param_count"] == bundle.model.num_params()
    assert len(meta["sha256"]) == 64


def test_load_wraps_an_explain_model_with_names():
    b = models.load("breast_cancer_mlp")
    assert b.model.input_spec.feature_names == b.dataset.feature_names and len(b.dataset.feature_names) == 30
    assert b.model.class_names == ("malignant", "benign")
    s = models.load("shapes_cnn")
    assert s.model.input_spec.shape == (64, 64, 3) and s.model.input_spec.value_range == (0.0, 1.0)
    assert {"block1", "block2", "block3", "fc", "head"} <= set(s.model.layer_names)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; expected one of \[.*'shapes_cnn'"):
        get_spec("resnet")


def test_checkpoint_of_another_model_is_rejected(tmp_path):
    import shutil

    from models.checkpoint import CheckpointError

    for suffix in (".msgpack", ".json"):
        shutil.copy(get_spec("digits_cnn").checkpoint_path.with_suffix(suffix), tmp_path / f"x{suffix}")
    models.load.cache_clear()
    with pytest.raises(CheckpointError, match=r"x\.msgpack: .*(shape|missing|unexpected)"):
        models.load("shapes_cnn", checkpoint_path=tmp_path / "x.msgpack")
    assert predict is not None
