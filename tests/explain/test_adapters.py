import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import explain


def test_linen_layers_are_submodule_paths(linen_cnn):
    assert linen_cnn.layer_names == ("conv1", "conv2", "head")
    assert linen_cnn.layer_shapes == {"conv1": (8, 8, 4), "conv2": (8, 8, 6), "head": (3,)}


def test_nnx_layers_are_attribute_paths(nnx_mlp):
    assert nnx_mlp.layer_names == ("fc1", "fc2")
    assert nnx_mlp.layer_shapes == {"fc1": (7,), "fc2": (3,)}


def test_linen_apply_equals_module_apply(linen_cnn, key):
    x = jax.random.uniform(key, (2, 8, 8, 3))
    from testlib import TinyCNN

    direct = TinyCNN().apply(linen_cnn.params, x)
    np.testing.assert_allclose(linen_cnn.apply(linen_cnn.params, x), direct, rtol=1e-6)


def test_tap_adds_delta_and_records_clean_activation(nnx_mlp, key):
    x = jax.random.normal(key, (3, 5))
    out0, acts0 = nnx_mlp.tap(nnx_mlp.params, x, {})
    delta = jnp.ones((3, 7))
    out1, acts1 = nnx_mlp.tap(nnx_mlp.params, x, {"fc1": delta})
    np.testing.assert_allclose(acts0["fc1"], acts1["fc1"], rtol=1e-6)
    assert not np.allclose(out0, out1)
    np.testing.assert_allclose(out0, nnx_mlp.apply(nnx_mlp.params, x), rtol=1e-6)


def test_nnx_module_is_not_edited(key):
    from testlib import TinyMLP

    module = TinyMLP(nnx.Rngs(0))
    model = explain.from_nnx(module, input_shape=(5,))
    model.tap(model.params, jnp.ones((1, 5)), {"fc1": jnp.zeros((1, 7))})
    assert type(module.fc1) is nnx.Linear
    assert not hasattr(module.fc1, "_explain_tap")


def test_regression_head_of_rank_one_becomes_two_d(key):
    class Reg(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(x)[:, 0]

    m = Reg()
    model = explain.from_linen(m, m.init(key, jnp.zeros((1, 3))), input_shape=(3,), output_kind="regression")
    assert model.apply(model.params, jnp.ones((4, 3))).shape == (4, 1)
    assert model.num_outputs == 1


def test_unknown_layer_names_known_ones(linen_cnn):
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'.*expected one of \['conv1', 'conv2', 'head'\]"):
        linen_cnn.check_layer("conv9")


def test_layer_names_follow_the_forward_pass_not_the_alphabet(key):
    class Deep(nn.Module):
        @nn.compact
        def __call__(self, x):
            for i in (1, 2, 10, 3):
                x = nn.Dense(2, name=f"fc{i}")(x)
            return x

    m = Deep()
    model = explain.from_linen(m, m.init(key, jnp.zeros((1, 2))), input_shape=(2,))
    assert model.layer_names == ("fc1", "fc2", "fc10", "fc3")


def test_shared_submodule_is_not_a_layer_and_cannot_be_tapped(key):
    class Shared(nn.Module):
        @nn.compact
        def __call__(self, x):
            d = nn.Dense(2, name="shared")
            return nn.Dense(2, name="out")(d(d(x)))

    m = Shared()
    model = explain.from_linen(m, m.init(key, jnp.zeros((1, 2))), input_shape=(2,))
    assert model.layer_names == ("out",)
    with pytest.raises(ValueError, match="layer 'shared' is called more than once"):
        model.tap(model.params, jnp.ones((1, 2)), {"shared": jnp.zeros((1, 2))})
