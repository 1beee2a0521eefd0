import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from testlib import central_difference, central_difference_batched, to_float64

import explain
from explain.adapters import TrainingModeError


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


# ----------------------------------------------------------------------------- models as written in the wild (issue 12)


class CNN(nnx.Module):
    """Flax's MNIST example CNN, small: Conv, BatchNorm, Dropout, avg_pool, Linear; the call takes ``rngs``."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(4, rngs=rngs)
        self.dropout1 = nnx.Dropout(rate=0.25)
        self.conv2 = nnx.Conv(4, 6, kernel_size=(3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(6, rngs=rngs)
        self.avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(2 * 2 * 6, 8, rngs=rngs)
        self.dropout2 = nnx.Dropout(rate=0.25)
        self.linear2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x, rngs: nnx.Rngs):
        x = self.avg_pool(nnx.relu(self.bn1(self.dropout1(self.conv1(x), rngs=rngs))))
        x = self.avg_pool(nnx.relu(self.bn2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dropout2(self.linear1(x), rngs=rngs))
        return self.linear2(x)


def _trained_cnn() -> CNN:
    """A CNN whose BatchNorm running statistics are not the initial (0, 1), so eval mode is not trivial."""
    cnn = CNN(rngs=nnx.Rngs(0))
    rngs = nnx.Rngs(dropout=1)
    for i in range(3):
        cnn(jax.random.uniform(jax.random.key(10 + i), (16, 8, 8, 1)) * 2.0 + 0.5, rngs)
    return cnn


@pytest.fixture(scope="module")
def cnn_model() -> explain.Model:
    cnn = _trained_cnn()
    cnn.eval()
    return explain.from_nnx(cnn, input_shape=(8, 8, 1), call_args=(nnx.Rngs(0),))


def test_nnx_cnn_in_training_mode_names_its_layers_and_how_to_switch():
    with pytest.raises(TrainingModeError) as err:
        explain.from_nnx(CNN(rngs=nnx.Rngs(0)), input_shape=(8, 8, 1), call_args=(nnx.Rngs(0),))
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert msg.startswith("model CNN is in training mode (")
    for part in (
        "BatchNorm at 'bn1' uses batch statistics",
        "BatchNorm at 'bn2' uses batch statistics",
        "Dropout at 'dropout1' is active",
        "Dropout at 'dropout2' is active",
        "call model.eval() first (or construct it with use_running_average=True / deterministic=True)",
    ):
        assert part in msg


def test_nnx_cnn_without_its_rngs_argument_says_to_pass_it():
    cnn = CNN(rngs=nnx.Rngs(0))
    cnn.eval()
    with pytest.raises(
        TypeError, match=r"CNN.__call__ needs arguments besides x \('rngs'\): pass them with call_args="
    ):
        explain.from_nnx(cnn, input_shape=(8, 8, 1))


def test_nnx_cnn_in_eval_mode_matches_the_module_and_leaves_user_objects_alone():
    cnn = _trained_cnn()
    cnn.eval()
    rngs = nnx.Rngs(0)
    count = int(rngs.default.count[...])
    model = explain.from_nnx(cnn, input_shape=(8, 8, 1), call_args=(rngs,))
    x = jax.random.uniform(jax.random.key(3), (4, 8, 8, 1))
    np.testing.assert_allclose(model.apply(model.params, x), cnn(x, nnx.Rngs(5)), rtol=1e-5, atol=1e-6)
    explain.input_gradients(model, x)
    assert int(rngs.default.count[...]) == count
    assert type(cnn.bn1) is nnx.BatchNorm and not hasattr(cnn.bn1, "_explain_check")
    assert model.layer_names == ("conv1", "dropout1", "bn1", "conv2", "bn2", "linear1", "dropout2", "linear2")


def test_nnx_cnn_apply_under_jit_vmap_and_grad(cnn_model):
    x = jax.random.uniform(jax.random.key(4), (3, 8, 8, 1))
    eager = cnn_model.apply(cnn_model.params, x)
    np.testing.assert_allclose(jax.jit(cnn_model.apply)(cnn_model.params, x), eager, rtol=1e-5, atol=1e-6)
    per_sample = jax.vmap(lambda xi: cnn_model.apply(cnn_model.params, xi[None])[0])(x)
    np.testing.assert_allclose(per_sample, eager, rtol=1e-5, atol=1e-6)
    g = jax.jit(jax.grad(lambda x: cnn_model.apply(cnn_model.params, x)[:, 0].sum()))(x)
    assert g.shape == x.shape and bool(jnp.any(g != 0))
    pg = jax.grad(lambda p: cnn_model.apply(p, x).sum())(cnn_model.params)
    assert jax.tree_util.tree_structure(pg) == jax.tree_util.tree_structure(cnn_model.params)


def test_nnx_cnn_input_gradients_and_integrated_gradients_match_finite_differences(cnn_model):
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 1))
    with jax.enable_x64(True):
        model = to_float64(cnn_model)

        def logit0(points):
            return np.asarray(model.apply(model.params, jnp.asarray(points)))[:, 0]

        g = explain.input_gradients(model, x, target=0).values
        fd = central_difference_batched(logit0, x[0])
        np.testing.assert_allclose(g[0], fd, rtol=1e-4, atol=1e-8)

        # Riemann midpoint IG with a zero baseline: x ⊙ mean_k ∇F(α_k x), α_k = (k + ½) / steps.
        steps = 4
        ig = explain.integrated_gradients(model, x, target=0, steps=steps, rule="riemann_middle").values
        fd_path = [central_difference_batched(logit0, (k + 0.5) / steps * x[0]) for k in range(steps)]
        np.testing.assert_allclose(ig[0], x[0] * np.mean(fd_path, axis=0), rtol=1e-4, atol=1e-8)


def test_nnx_cnn_layer_taps_work_through_the_call_arguments(cnn_model):
    x = jax.random.uniform(jax.random.key(5), (2, 8, 8, 1))
    cam = explain.grad_cam(cnn_model, x, layer="conv2", target=1)
    assert cam.values.shape == x.shape and bool(jnp.all(jnp.isfinite(cam.values)))
    out, acts = cnn_model.tap(cnn_model.params, x, {})
    np.testing.assert_allclose(out, cnn_model.apply(cnn_model.params, x), rtol=1e-6)
    assert acts["bn1"].shape == (2, 8, 8, 4)


class FlagNet(nnx.Module):
    """An NNX model switched by a call flag rather than by ``.eval()``."""

    def __init__(self, rngs: nnx.Rngs):
        self.fc = nnx.Linear(4, 6, rngs=rngs)
        self.bn = nnx.BatchNorm(6, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x, *, train: bool = True):
        h = self.bn(self.fc(x), use_running_average=not train)
        return self.out(self.drop(h, deterministic=not train))


def test_nnx_flags_given_at_call_time_are_the_ones_checked():
    with pytest.raises(TrainingModeError, match="BatchNorm at 'bn' uses batch statistics"):
        explain.from_nnx(FlagNet(nnx.Rngs(0)), input_shape=(4,))
    model = explain.from_nnx(FlagNet(nnx.Rngs(0)), input_shape=(4,), call_kwargs={"train": False})
    x = jnp.ones((2, 4))
    np.testing.assert_allclose(jax.jit(model.apply)(model.params, x), model.apply(model.params, x), rtol=1e-6)


def test_nnx_state_written_by_a_layer_of_our_own_is_training_mode():
    class RunningMean(nnx.Module):
        def __init__(self):
            self.mean = nnx.BatchStat(jnp.zeros(3))

        def __call__(self, x):
            self.mean[...] = 0.9 * self.mean[...] + 0.1 * x.mean(0)
            return x - self.mean[...]

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.stat = RunningMean()
            self.fc = nnx.Linear(3, 2, rngs=rngs)

        def __call__(self, x, rngs):
            return self.fc(self.stat(x) + 0.01 * jax.random.normal(rngs(), x.shape))

    with pytest.raises(TrainingModeError) as err:
        explain.from_nnx(Net(nnx.Rngs(0)), input_shape=(3,), call_args=(nnx.Rngs(1),))
    assert "BatchStat at 'stat/mean' is written" in str(err.value)
    assert "RngCount at 'call_args[0]/default/count' is written" in str(err.value)


def test_nnx_dict_and_tuple_outputs_are_named():
    class Heads(nnx.Module):
        def __init__(self, rngs, as_dict):
            self.fc = nnx.Linear(3, 2, rngs=rngs)
            self.as_dict = as_dict

        def __call__(self, x):
            y = self.fc(x)
            return {"logits": y, "aux": y.sum(-1)} if self.as_dict else (y, y.sum(-1))

    with pytest.raises(TypeError, match=r"model Heads returns a dict with keys \['aux', 'logits'\]; explain needs"):
        explain.from_nnx(Heads(nnx.Rngs(0), True), input_shape=(3,))
    with pytest.raises(TypeError, match=r"returns a tuple of 2 values \(shapes \(1, 2\), \(1,\)\).*\(N, K\)"):
        explain.from_nnx(Heads(nnx.Rngs(0), False), input_shape=(3,))


class MLP(nn.Module):
    """A linen MLP with the usual train flag for BatchNorm and Dropout."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(6)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.5, deterministic=not train)(nn.relu(x))
        return nn.Dense(3)(x)


@pytest.fixture(scope="module")
def mlp_variables():
    module = MLP()
    variables = module.init(jax.random.key(0), jnp.ones((1, 4)), train=False)
    # Running statistics other than the initial (0, 1).
    _, updates = module.apply(
        variables,
        jax.random.normal(jax.random.key(1), (8, 4)) * 3.0 + 1.0,
        rngs={"dropout": jax.random.key(2)},
        mutable=["batch_stats"],
    )
    return {**variables, **updates}


def test_linen_mlp_in_training_mode_says_to_pass_its_flag(mlp_variables):
    for kwargs in (None, {"train": True}):
        with pytest.raises(TrainingModeError) as err:
            explain.from_linen(MLP(), mlp_variables, input_shape=(4,), call_kwargs=kwargs)
        assert str(err.value) == (
            "linen module MLP is in training mode (BatchNorm at 'BatchNorm_0' uses batch statistics, "
            "Dropout at 'Dropout_0' is active): explanations need a deterministic model; "
            "pass call_kwargs={'train': False} (or the flag your module uses)"
        )


def test_linen_mlp_with_its_train_flag_off_works_with_layer_taps(mlp_variables):
    model = explain.from_linen(MLP(), mlp_variables, input_shape=(4,), call_kwargs={"train": False})
    x = jax.random.normal(jax.random.key(3), (3, 4))
    np.testing.assert_allclose(
        model.apply(model.params, x), MLP().apply(mlp_variables, x, train=False), rtol=1e-6, atol=1e-6
    )
    assert model.layer_names == ("Dense_0", "BatchNorm_0", "Dropout_0", "Dense_1")
    with jax.enable_x64(True):
        m64 = to_float64(model)
        xs = np.asarray(x, np.float64)[:1]
        lg = explain.layer_gradients(m64, xs, layer="BatchNorm_0", target=2)

        def f(h):
            out, _ = m64.tap(m64.params, jnp.asarray(xs), {"BatchNorm_0": jnp.asarray(h) - lg.activations})
            return out[0, 2]

        fd = central_difference(f, np.asarray(lg.activations))
        np.testing.assert_allclose(lg.gradients, fd, rtol=1e-4, atol=1e-9)
        assert bool(np.any(np.asarray(lg.gradients) != 0))


def test_linen_layers_of_our_own_that_write_or_draw_are_training_mode():
    class Custom(nn.Module):
        @nn.compact
        def __call__(self, x):
            count = self.variable("batch_stats", "count", jnp.zeros, ())
            if not self.is_initializing():
                count.value += 1
            return x + jax.random.normal(self.make_rng("dropout"), x.shape) if self.has_rng("dropout") else x

    m = Custom()
    variables = m.init(jax.random.key(0), jnp.ones((1, 2)))
    with pytest.raises(TrainingModeError, match=r"\('/' wants to update 'batch_stats'\)"):
        explain.from_linen(m, variables, input_shape=(2,))

    class Noisy(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x + jax.random.normal(self.make_rng("noise"), x.shape))

    n = Noisy()
    nv = n.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, jnp.ones((1, 2)))
    with pytest.raises(TrainingModeError, match=r"needs a 'noise' rng"):
        explain.from_linen(n, nv, input_shape=(2,))


def test_linen_variables_without_batch_stats_are_named(mlp_variables):
    with pytest.raises(ValueError, match=r"reads collection 'batch_stats' that variables does not have \(it has"):
        explain.from_linen(MLP(), {"params": mlp_variables["params"]}, input_shape=(4,), call_kwargs={"train": False})


def test_linen_dict_and_tuple_outputs_are_named_and_method_selects_the_logits(key):
    class Heads(nn.Module):
        as_dict: bool

        @nn.compact
        def __call__(self, x):
            y = nn.Dense(2)(x)
            return {"logits": y, "features": x} if self.as_dict else (y, x)

    m = Heads(True)
    variables = m.init(key, jnp.ones((1, 3)))
    with pytest.raises(TypeError, match=r"model Heads returns a dict with keys \['features', 'logits'\].*method="):
        explain.from_linen(m, variables, input_shape=(3,))
    with pytest.raises(TypeError, match=r"model Heads returns a tuple of 2 values \(shapes \(1, 2\), \(1, 3\)\)"):
        explain.from_linen(Heads(False), variables, input_shape=(3,))
    model = explain.from_linen(m, variables, input_shape=(3,), method=lambda mod, x: mod(x)["logits"])
    assert model.num_outputs == 2 and model.layer_names == ("Dense_0",)


def test_linen_extra_required_argument_not_given_is_named(key):
    class Masked(nn.Module):
        @nn.compact
        def __call__(self, x, mask, *, scale):
            return nn.Dense(2)(x * mask * scale)

    m = Masked()
    variables = m.init(key, jnp.ones((1, 3)), jnp.ones(3), scale=1.0)
    with pytest.raises(
        TypeError, match=r"Masked.__call__ needs arguments besides x \('mask', 'scale'\): pass them with call_args="
    ):
        explain.from_linen(m, variables, input_shape=(3,))
    with pytest.raises(TypeError, match=r"cannot be called as \(x, \*call_args, \*\*call_kwargs\)"):
        explain.from_linen(m, variables, input_shape=(3,), call_args=(jnp.ones(3), 1.0, 2.0))
    model = explain.from_linen(m, variables, input_shape=(3,), call_args=(jnp.ones(3),), call_kwargs={"scale": 2.0})
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(model.apply(model.params, x), m.apply(variables, x, jnp.ones(3), scale=2.0))


def test_linen_call_kwargs_that_belong_to_apply_are_refused(mlp_variables):
    with pytest.raises(ValueError, match=r"call_kwargs \['rngs'\] are arguments of linen's module.apply"):
        explain.from_linen(
            MLP(), mlp_variables, input_shape=(4,), call_kwargs={"train": True, "rngs": {"dropout": jax.random.key(0)}}
        )
