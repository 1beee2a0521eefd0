"""Per-layer gradient flow and the Jacobian chain, proved against finite differences and jax.grad."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from testlib import central_difference, to_float64

import explain
from explain import gradflow


class SkipMLP(nn.Module):
    """Not a chain: the head sees ``a`` directly as well as through ``b``."""

    @nn.compact
    def __call__(self, x):
        a = jnp.tanh(nn.Dense(4, name="a")(x))
        b = jnp.tanh(nn.Dense(4, name="b")(a))
        return nn.Dense(2, name="head")(a + b)


class DeadMLP(nn.Module):
    """``fc1`` is a pre-activation; units with bias -100 never pass the ReLU, those with +100 always do."""

    @nn.compact
    def __call__(self, x):
        z = nn.Dense(6, name="fc1")(x)
        return nn.Dense(2, name="head")(jax.nn.relu(z))


def _linen(module, features=3):
    variables = module.init(jax.random.key(4), jnp.zeros((1, features)))
    return explain.from_linen(module, variables, input_shape=(features,))


def _x(model, n, seed=5):
    return np.asarray(jax.random.uniform(jax.random.key(seed), (n, *model.input_spec.shape)), np.float64)


def test_flow_grads_match_central_differences(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x, labels = _x(m, 3), np.array([0, 2, 1])
        p = explain.gradients.prepare(m, x, target="loss", labels=labels)
        x, target = jnp.asarray(p.x), p.target
        layers = gradflow.resolve_layers(m, None)
        assert layers == ("fc1", "fc2")
        shapes = {k: m.layer_shapes[k] for k in layers}
        _, g_acts, g_params = jax.jit(
            gradflow.flow_grads, static_argnums=0, static_argnames=("layers", "layer_shapes")
        )(
            m.tap, m.params, x, target, layers=layers, layer_shapes=tuple(shapes[k] for k in layers)
        )  # a pure core: usable inside a user's jax.jit
        for name in layers:

            def f(d, name=name):
                return jnp.sum(target(m.tap(m.params, x, {name: jnp.asarray(d)})[0]))

            fd = central_difference(f, np.zeros((3, *shapes[name])))
            np.testing.assert_allclose(g_acts[name], fd, rtol=1e-4, atol=1e-9)
        leaves, treedef = jax.tree_util.tree_flatten(m.params)
        g_leaves = jax.tree_util.tree_leaves(g_params)
        assert len(g_leaves) == len(leaves)
        for i, leaf in enumerate(leaves):

            def f(v, i=i):
                new = [jnp.asarray(v) if j == i else leaves[j] for j in range(len(leaves))]
                return jnp.sum(target(m.apply(jax.tree_util.tree_unflatten(treedef, new), x)))

            np.testing.assert_allclose(g_leaves[i], central_difference(f, np.asarray(leaf)), rtol=1e-4, atol=1e-9)


def test_gradient_flow_norms(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x, labels = _x(m, 4), np.array([0, 2, 1, 1])
        flow = gradflow.gradient_flow(m, x, labels=labels)
        p = explain.gradients.prepare(m, x, target="loss", labels=labels)
        xj, target = jnp.asarray(p.x), p.target
        shapes = tuple(m.layer_shapes[k] for k in flow.layers)
        _, g_acts, g_params = gradflow.flow_grads(m.tap, m.params, xj, target, layers=flow.layers, layer_shapes=shapes)
        for j, name in enumerate(flow.layers):
            np.testing.assert_allclose(
                flow.activation_grad_norms[:, j], np.linalg.norm(g_acts[name], axis=1), rtol=1e-10
            )
            batch = np.sqrt(sum(np.sum((np.asarray(v) / 4) ** 2) for v in jax.tree_util.tree_leaves(g_params[name])))
            np.testing.assert_allclose(flow.batch_param_grad_norms[j], batch, rtol=1e-10)
        # Per-sample parameter gradient of sample 1, layer fc2, by central differences on its kernel and bias.
        leaves, treedef = jax.tree_util.tree_flatten(m.params)
        fd_sq = 0.0
        for i, (path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(m.params)[0]):
            if "fc2" not in jax.tree_util.keystr(path):
                continue

            def f(v, i=i):
                new = [jnp.asarray(v) if j == i else leaves[j] for j in range(len(leaves))]
                return target.rows(slice(1, 2))(m.apply(jax.tree_util.tree_unflatten(treedef, new), xj[1:2]))[0]

            fd_sq += np.sum(central_difference(f, np.asarray(leaf)) ** 2)
        np.testing.assert_allclose(flow.param_grad_norms[1, 1], np.sqrt(fd_sq), rtol=1e-4)
        rows = flow.rows()
        assert [r["layer"] for r in rows] == ["fc1", "fc2"]
        np.testing.assert_allclose(rows[0]["act_grad_std"], np.std(flow.activation_grad_norms[:, 0]), rtol=1e-10)


def test_dead_units():
    model = _linen(DeadMLP())
    params = jax.tree_util.tree_map(lambda p: p, model.params)
    params["params"]["fc1"]["bias"] = params["params"]["fc1"]["bias"].at[:2].set(-100.0).at[2:].set(100.0)
    import dataclasses

    model = dataclasses.replace(model, params=params)
    flow = gradflow.gradient_flow(model, _x(model, 8).astype(np.float32), labels=np.arange(8) % 2, layers="fc1")
    np.testing.assert_allclose(flow.dead_fraction, [2 / 6])
    np.testing.assert_allclose(flow.dead_channel_fraction, [2 / 6])


def test_forward_order_is_the_trace_order(linen_cnn):
    order = gradflow.forward_order(linen_cnn)
    assert order.index("conv1") < order.index("conv2") < order.index("head")
    assert gradflow.resolve_layers(linen_cnn, ["head", "conv1"]) == ("conv1", "head")


@pytest.mark.parametrize("name", ["shapes_cnn", "digits_cnn", "breast_cancer_mlp", "friedman1_mlp"])
def test_chained_vjps_equal_jax_grad_on_every_shipped_model(name):
    import models

    bundle = models.load(name)
    ds = bundle.dataset
    with jax.enable_x64(True):
        m = to_float64(bundle.model)
        x = np.asarray(ds.test.x[:1], np.float64)
        labels = ds.test.y[:1]
        chain = gradflow.jacobian_chain(m, x, labels=labels, singular_values=False)
        p = explain.gradients.prepare(m, x, target="loss", labels=labels)
        ref = jax.grad(lambda x: jnp.sum(p.target(m.apply(m.params, x))))(jnp.asarray(p.x))
        err = np.linalg.norm(chain.chained_input_grad - ref) / np.linalg.norm(ref)
        print(f"{name}: cuts {chain.cuts}, |chained - jax.grad| / |jax.grad| = {err:.1e}")
        assert err <= 1e-6, name
        assert np.max(chain.chain_error) <= 1e-8


def test_singular_values_of_the_accumulated_product(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x = _x(m, 3)
        chain = gradflow.jacobian_chain(m, x, target=0)
        assert chain.cuts == ("input", "fc1", "fc2") and list(chain.depth) == [3, 2, 1]
        for c, cut in enumerate(chain.cuts):
            for i in range(3):
                if cut == "input":
                    jac = jax.jacobian(lambda v, i=i: m.apply(m.params, v[None])[0])(jnp.asarray(x[i]))
                else:
                    h = jnp.zeros((1, *m.layer_shapes[cut]))
                    jac = jax.jacobian(
                        lambda d, i=i, cut=cut: m.tap(m.params, jnp.asarray(x[i : i + 1]), {cut: d})[0][0]
                    )(h)
                s = np.linalg.svd(np.asarray(jac).reshape(3, -1), compute_uv=False)
                np.testing.assert_allclose(chain.sigma_max[i, c], s[0], rtol=1e-8)
                np.testing.assert_allclose(chain.sigma_min[i, c], s[-1], rtol=1e-6)
        np.testing.assert_allclose(chain.sigma_max[:, 2], 1.0)  # fc2 is the output itself


def test_not_a_chain_raises():
    model = _linen(SkipMLP())
    x = _x(model, 4).astype(np.float32)
    with pytest.raises(ValueError, match="do not form a chain: at cut 'a'.*bypasses 'b'"):
        gradflow.jacobian_chain(model, x, labels=np.array([0, 1, 0, 1]), layers=["a", "b"])
    chain = gradflow.jacobian_chain(model, x, labels=np.array([0, 1, 0, 1]), layers=["a"])  # a alone is a cut
    assert chain.cuts == ("input", "a")


def test_bad_input(linen_cnn):
    x = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*expected one of"):
        gradflow.gradient_flow(linen_cnn, x, layers="conv9")
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        gradflow.jacobian_chain(linen_cnn, x, layers=["conv1", "nope"])
    with pytest.raises(ValueError, match="expected distinct layer names"):
        gradflow.jacobian_chain(linen_cnn, x, layers=["conv1", "conv1"])
    with pytest.raises(ValueError, match="expected at least one layer name"):
        gradflow.gradient_flow(linen_cnn, x, layers=[])
    with pytest.raises(ValueError, match="expected dead_tol >= 0"):
        gradflow.gradient_flow(linen_cnn, x, dead_tol=-1.0)
    with pytest.raises(ValueError, match="expected rtol > 0"):
        gradflow.jacobian_chain(linen_cnn, x, rtol=0.0)
    with pytest.raises(ValueError, match="expected x of shape"):
        gradflow.gradient_flow(linen_cnn, x[0])
    bare = explain.Model(
        apply=lambda p, x: x.reshape(x.shape[0], -1)[:, :3], params={}, input_spec=explain.InputSpec((4,))
    )
    with pytest.raises(ValueError, match="exposes no layers"):
        gradflow.gradient_flow(bare, np.zeros((2, 4), np.float32))


def test_memory_budget_only_chunks_rows(linen_cnn):
    x = _x(linen_cnn, 5).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1])
    one_row = 1  # bytes: one row per compiled call, the last chunk padded
    flow, small = (gradflow.gradient_flow(linen_cnn, x, labels=labels, memory_budget=b) for b in (None, one_row))
    chain, chunked = (gradflow.jacobian_chain(linen_cnn, x, labels=labels, memory_budget=b) for b in (None, one_row))
    for a, b in ((flow, small), (chain, chunked)):
        leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
        assert len(leaves_a) == len(leaves_b) > 0
        for u, v in zip(leaves_a, leaves_b):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
    assert (flow.layers, chain.cuts) == (("conv1", "conv2", "head"), ("input", "conv1", "conv2", "head"))
    # results are pytrees with static names: to_numpy keeps them and converts every array
    host = flow.to_numpy()
    assert host.layers == flow.layers and isinstance(host.activation_grad_norms, np.ndarray)
    assert isinstance(chain.to_numpy().sigma_max, np.ndarray) and list(chain.depth) == [4, 3, 2, 1]


def test_target_all_and_bad_budget_are_refused(linen_cnn):
    x = _x(linen_cnn, 2).astype(np.float32)
    with pytest.raises(ValueError, match="target='all' is not supported"):
        gradflow.gradient_flow(linen_cnn, x, target="all")
    with pytest.raises(ValueError, match="target='all' is not supported"):
        gradflow.jacobian_chain(linen_cnn, x, target="all")
    with pytest.raises(ValueError, match="memory_budget"):
        gradflow.gradient_flow(linen_cnn, x, memory_budget=0)
