"""Every shipped checkpoint loads, validates, and meets its target on its test split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from testlib import to_float64

import explain
import models
from models.datasets import split_hash
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
    # the test split alone: split_hashes() would generate the training split too (most of shapes' cost)
    assert meta["dataset_split_hashes"]["test"] == split_hash(bundle.dataset.test)
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
    with pytest.raises(CheckpointError, match=r"x\.json: the metadata describes model 'digits_cnn', but 'shapes_cnn'"):
        models.load("shapes_cnn", checkpoint_path=tmp_path / "x.msgpack")


def test_swapped_twin_checkpoints_are_refused(tmp_path):
    """shapes_cnn and shapes_cnn_robust share every shape: only the metadata's name tells them apart."""
    import shutil

    from models.checkpoint import CheckpointError

    for suffix in (".msgpack", ".json"):
        shutil.copy(get_spec("shapes_cnn_robust").checkpoint_path.with_suffix(suffix), tmp_path / f"shapes_cnn{suffix}")
    with pytest.raises(CheckpointError, match=r"shapes_cnn\.json: the metadata describes model 'shapes_cnn_robust'"):
        models.load("shapes_cnn", checkpoint_path=tmp_path / "shapes_cnn.msgpack")
    assert predict is not None


TARGET_KINDS = {
    "logit[pred]": lambda b: "pred",
    "logit[class]": lambda b: 0,
    "prob": lambda b: explain.targets.class_score(1, "prob"),
    "log_prob": lambda b: explain.targets.class_score("pred", "log_prob"),
    "loss": lambda b: explain.targets.loss(np.array([0, 1])),
    "custom": lambda b: explain.targets.custom(lambda o: jnp.sin(o / 10).sum(axis=1)),
}
REGRESSION_KINDS = {
    "output": lambda b: explain.targets.output(0),
    "loss": lambda b: explain.targets.loss(b.dataset.test.y[:2]),
    "custom": lambda b: explain.targets.custom(lambda o: jnp.sin(o[:, 0])),
}


def _cases():
    """Every target kind on every architecture; a model that shares an earlier one's architecture (the robust
    shapes CNN: same factory, other weights) is checked with one kind, since the target code is the same."""
    factories = set()
    for name in SHIPPED:
        kinds = REGRESSION_KINDS if SPECS[name].dataset == "friedman1" else TARGET_KINDS
        repeated = SPECS[name].make_module in factories
        factories.add(SPECS[name].make_module)
        for kind in list(kinds)[:1] if repeated else kinds:
            yield pytest.param(name, kinds[kind], id=f"{name}-{kind}")


@pytest.mark.parametrize("name, make_target", list(_cases()))
def test_input_gradients_of_shipped_models_match_central_differences(name, make_target):
    """float64 central differences along every coordinate (small inputs) or 48 random ones and 4 random directions."""
    bundle = models.load(name)
    with jax.enable_x64(True):
        model = to_float64(bundle.model)
        # ReLU nets with max-pooling are piecewise linear: at an exact tie (digits have
        # uniform regions, so equal conv outputs share a pooling window) there is no
        # derivative to check. A 1e-4 jitter moves the point off the tie set.
        # The two least confident test samples: at a saturated softmax the log-prob and
        # the loss are flat to below float64 resolution, and there is nothing to compare.
        test = bundle.dataset.test
        out = np.asarray(bundle.model.apply(bundle.model.params, test.x[:200]))
        top2 = np.sort(out, axis=1)[:, -2:] if out.shape[1] > 1 else np.zeros((len(out), 2))
        rows = np.argsort(top2[:, 1] - top2[:, 0])[:2]
        u = np.random.default_rng(1).uniform(-1, 1, (2, *test.x.shape[1:]))
        x = 1e-4 + (1 - 2e-4) * np.asarray(test.x[rows], np.float64) + 0.5e-4 * u  # stays inside [0, 1]
        target = make_target(bundle)
        g = np.asarray(explain.input_gradients(model, x, target=target).values)
        bound = explain.targets.resolve(model, target, 2)
        rng = np.random.default_rng(0)
        d = x[0].size
        coords = np.eye(d) if d <= 64 else np.eye(d)[rng.choice(d, 48, replace=False)]
        normal = rng.normal(size=(4, d))
        dirs = np.concatenate([coords, normal / np.linalg.norm(normal, axis=1, keepdims=True)])
        dirs = dirs.reshape(-1, *x.shape[1:])  # unit steps: an ε-step crosses no kink
        eps = 1e-6

        @jax.jit
        def f(points):  # target of sample 0 at each point, sample 1 held fixed
            batch = jnp.stack([points, jnp.broadcast_to(x[1], points.shape)], axis=1).reshape(-1, *x.shape[1:])
            return bound.tile(points.shape[0])(model.apply(model.params, batch))[0::2]

        fd = (np.asarray(f(x[0] + eps * dirs)) - np.asarray(f(x[0] - eps * dirs))) / (2 * eps)
        analytic = dirs.reshape(len(dirs), -1) @ g[0].ravel()
        err = np.linalg.norm(analytic - fd) / np.linalg.norm(fd)
        assert err <= 1e-4, f"{name}: relative error {err:.2e}"
