"""The chain-rule primitive against finite differences, batching and hand-split models."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from testlib import central_difference, central_difference_batched, to_float64

import explain
from explain import targets

TARGETS = {
    "pred_logit": lambda n: "pred",
    "class_index": lambda n: 1,
    "per_sample_classes": lambda n: np.arange(n) % 3,
    "prob": lambda n: targets.class_score(2, "prob"),
    "log_prob": lambda n: targets.class_score("pred", "log_prob"),
    "loss_ce": lambda n: targets.loss(np.arange(n) % 3),
    "custom": lambda n: targets.custom(lambda o: jnp.sin(o).sum(axis=1)),
}


def _fd_check(model, x, target, rel=1e-4):
    g = np.asarray(explain.input_gradients(model, x, target=target).values)
    bound = explain.gradients.prepare(model, x, target=target).target
    for i in range(x.shape[0]):
        target_i = bound.rows(np.full(2 * x[i].size, i))

        @jax.jit
        def f_batch(points, target_i=target_i):
            return target_i(model.apply(model.params, points))

        fd = central_difference_batched(f_batch, x[i])
        err = np.linalg.norm(g[i] - fd) / max(np.linalg.norm(fd), 1e-12)
        assert err <= rel, f"sample {i}: relative error {err:.2e}"


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_input_gradients_match_finite_differences_nnx(nnx_mlp, kind):
    with jax.enable_x64(True):
        model = to_float64(nnx_mlp)
        x = np.random.default_rng(0).normal(size=(3, 5))
        _fd_check(model, x, TARGETS[kind](3))


@pytest.mark.parametrize("kind", ["pred_logit", "loss_ce", "prob"])
def test_input_gradients_match_finite_differences_linen_cnn(linen_cnn, kind):
    with jax.enable_x64(True):
        model = to_float64(linen_cnn)
        x = np.random.default_rng(1).uniform(size=(2, 8, 8, 3))
        _fd_check(model, x, TARGETS[kind](2))


def test_regression_mse_and_output_targets_match_finite_differences(nnx_mlp):
    with jax.enable_x64(True):
        model = dataclasses.replace(to_float64(nnx_mlp), output_kind="regression")
        x = np.random.default_rng(2).normal(size=(2, 5))
        _fd_check(model, x, targets.output(1))
        _fd_check(model, x, targets.loss(np.ones((2, 3)), "mse"))


def test_batch_gradients_equal_stacked_single_sample_gradients(linen_cnn, key):
    x = jax.random.uniform(key, (5, 8, 8, 3))
    cls = np.array([0, 1, 2, 1, 0])
    batch = explain.input_gradients(linen_cnn, x, target=cls).values
    singles = jnp.concatenate(
        [explain.input_gradients(linen_cnn, x[i : i + 1], target=cls[i : i + 1]).values for i in range(5)]
    )
    np.testing.assert_allclose(batch, singles, rtol=1e-5, atol=1e-7)


def test_layer_gradients_equal_a_hand_split_model(linen_cnn, key):
    import flax.linen as nn

    x = jax.random.uniform(key, (3, 8, 8, 3))
    lg = explain.layer_gradients(linen_cnn, x, layer="conv2", target=1)
    p = linen_cnn.params["params"]

    def conv(name, features, h):
        return nn.Conv(features, (3, 3)).apply({"params": p[name]}, h)

    def head_from_conv2(h):  # the model split by hand after conv2's output
        a = jax.nn.relu(h).mean(axis=(1, 2))
        return nn.Dense(3).apply({"params": p["head"]}, a)[:, 1]

    h = conv("conv2", 6, jax.nn.relu(conv("conv1", 4, x)))
    np.testing.assert_allclose(lg.activations, h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lg.gradients, jax.grad(lambda h: head_from_conv2(h).sum())(h), rtol=1e-5, atol=1e-7)


def test_layer_gradients_nnx_match_finite_differences(nnx_mlp):
    with jax.enable_x64(True):
        model = to_float64(nnx_mlp)
        x = np.random.default_rng(3).normal(size=(1, 5))
        lg = explain.layer_gradients(model, x, layer="fc1", target=0)

        def f(h):
            out, _ = model.tap(model.params, jnp.asarray(x), {"fc1": jnp.asarray(h) - lg.activations})
            return out[0, 0]

        fd = central_difference(f, np.asarray(lg.activations))
        np.testing.assert_allclose(lg.gradients, fd, rtol=1e-4, atol=1e-9)


def test_hvp_matches_finite_differences_of_the_gradient(nnx_mlp):
    with jax.enable_x64(True):
        model = to_float64(nnx_mlp)
        rng = np.random.default_rng(4)
        x, v = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
        hv = np.asarray(explain.hvp(model, x, v=v, target=1))
        eps = 1e-5
        gp = explain.input_gradients(model, x + eps * v, target=1).values
        gm = explain.input_gradients(model, x - eps * v, target=1).values
        fd = np.asarray((gp - gm) / (2 * eps))
        assert np.linalg.norm(hv - fd) / np.linalg.norm(fd) <= 1e-4


def test_another_class_reuses_the_compiled_call(linen_cnn, key):
    from saliency_testlib import CompileCounter

    x = jax.random.uniform(key, (2, 8, 8, 3))
    explain.input_gradients(linen_cnn, x, target=0)
    with CompileCounter() as c:
        explain.input_gradients(linen_cnn, x, target=2)
        explain.input_gradients(linen_cnn, x, target=np.array([1, 0]))
    assert c.count == 0


def test_chunked_gradients_equal_one_call(linen_cnn, key):
    x = np.asarray(jax.random.uniform(key, (7, 8, 8, 3)))
    whole = explain.input_gradients(linen_cnn, x, target="pred")
    small = explain.input_gradients(
        linen_cnn, x, target="pred", memory_budget=3 * explain.chunking.row_bytes(linen_cnn)
    )
    np.testing.assert_allclose(small.values, whole.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(small.outputs, whole.outputs, rtol=1e-5, atol=1e-6)


def test_bad_input_raises_before_compilation(linen_cnn, monkeypatch):
    import explain.gradients as g

    def boom(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(g, "_grad", boom)
    monkeypatch.setattr(g, "_forward", boom)
    monkeypatch.setattr(g, "_layer_grad", boom)
    with pytest.raises(ValueError, match="expected x of shape"):
        explain.input_gradients(linen_cnn, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="class index 5 out of range"):
        explain.input_gradients(linen_cnn, np.zeros((1, 8, 8, 3), np.float32), target=5)
    with pytest.raises(ValueError, match="unknown layer"):
        explain.layer_gradients(linen_cnn, np.zeros((1, 8, 8, 3), np.float32), layer="nope")
    with pytest.raises(TypeError, match="float32 or float64, got float16"):
        explain.input_gradients(linen_cnn, np.zeros((1, 8, 8, 3), np.float16))


def test_target_of_the_wrong_shape_names_the_users_n(linen_cnn):
    x = np.zeros((4, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match=r"shape \(4,\), got \(4, 3\)"):
        explain.input_gradients(linen_cnn, x, target=lambda o: o)
    with pytest.raises(ValueError, match=r"shape \(4,\), got \(\)"):
        explain.input_gradients(linen_cnn, x, target=lambda o: 1.0)


def test_predicted_class_is_frozen_at_x(linen_cnn, key):
    x = jax.random.uniform(key, (3, 8, 8, 3))
    p = explain.gradients.prepare(linen_cnn, x, target="pred")
    np.testing.assert_array_equal(p.target.aux, np.argmax(linen_cnn.apply(linen_cnn.params, x), axis=1))
    assert p.target.name == "logit[pred]"


def test_all_outputs_gradient_stacks_every_class(linen_cnn, key):
    x = jax.random.uniform(key, (2, 8, 8, 3))
    p = explain.gradients.prepare(linen_cnn, x, target="all", allow_all=True)
    _, g, _ = explain.gradients.target_and_grad(linen_cnn.apply, linen_cnn.params, p.x, p.target)
    for k in range(3):
        np.testing.assert_allclose(
            g[:, k], explain.input_gradients(linen_cnn, x, target=k).values, rtol=1e-5, atol=1e-7
        )


def test_one_vjp_call_site_for_input_and_layer_gradients():
    """gradients.py holds the one ``jax.vjp`` of inputs and layers; gradflow/flow.py the one of parameters."""
    from pathlib import Path

    root = Path(explain.__file__).parent
    sites = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") for _ in range(p.read_text().count("jax.vjp(")))
    assert sites == ["gradflow/flow.py", "gradients.py"]


def test_hvp_direction_shape_is_checked(nnx_mlp):
    with pytest.raises(ValueError, match=r"expected v of shape \(N, 5\)"):
        explain.hvp(nnx_mlp, np.zeros((2, 5), np.float32), v=np.zeros((2, 4), np.float32))
