"""SmoothGrad, SmoothGrad², VarGrad: closed forms under Gaussian noise, the wrapped methods, chunking, keys, errors.

Monte-Carlo tolerances are derived, not tuned: an estimate ``m̂ = (1/n) Σ_s v_s`` of ``E v`` is
checked as ``|m̂ - E v| <= 4 · std(v_s) / √n + eps``, four standard errors computed from the very
``n`` draws the method used (reproduced from the documented key derivation
``fold_in(fold_in(key, s), row)`` of :mod:`explain.saliency.smooth`), plus ``eps`` for float32
rounding. Exact reproductions (same draws) are checked to float32 precision instead.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images, linear_model, quadratic_model

import explain
from explain import chunking
from explain.gradients import prepare
from explain.saliency import registry
from explain.saliency.gradient import vanilla_gradient_core
from explain.saliency.smooth import (
    noise_sigma,
    noise_tunnel,
    noise_tunnel_core,
    smoothgrad,
    smoothgrad_core,
    smoothgrad_sq,
    vargrad,
)

N_SE = 4  # standard errors allowed for a Monte-Carlo estimate


def reproduce_noise(key, n_samples: int, n_rows: int, shape: tuple[int, ...]) -> np.ndarray:
    """``ε (S, N, *shape)``: sample ``s`` of row ``i`` is ``normal(fold_in(fold_in(key, s), i), shape)`` (smooth.py)."""

    def one(s, i):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, s), i), shape, jnp.float32)

    draw = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    return np.asarray(draw(jnp.arange(n_samples), jnp.arange(n_rows)), np.float64)


def row_sigma(x: np.ndarray, noise_level: float) -> np.ndarray:
    """σ per row of a model without a declared range: ``noise_level · (max - min)`` of the row, ``(N, 1)``."""
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    return noise_level * (flat.max(1) - flat.min(1))[:, None]


def assert_within_standard_errors(estimate, draws: np.ndarray, expected, eps: float) -> None:
    """``|estimate - expected| <= N_SE · std(draws) / √n + eps`` per element; ``draws`` ``(n, ...)``."""
    n = draws.shape[0]
    se = draws.std(axis=0, ddof=1) / np.sqrt(n)
    err = np.abs(np.asarray(estimate, np.float64) - expected)
    bound = N_SE * se + eps
    assert (err <= bound).all(), f"max error / bound {np.max(err / bound):.3f} (n = {n})"


def test_documented_noise_keys_are_the_ones_used():
    # Gradient × Input of a linear model under noise is w ⊙ (x + σ ε_s): the mean reveals the draws.
    m, key = linear_model(), jax.random.key(11)
    x = np.asarray(jax.random.normal(jax.random.key(0), (3, 5)))
    w = np.asarray(m.params["w"][:, 2], np.float64)
    eps = reproduce_noise(key, 6, 3, (5,))
    # The vmapped reproduction is the plain loop over the documented keys.
    loop = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 4), 1), (5,)))
    np.testing.assert_array_equal(eps[4, 1], loop)
    a = noise_tunnel(m, x, key=key, method="gradient_x_input", target=2, n_samples=6, noise_level=0.3)
    expect = w * (x + row_sigma(x, 0.3) * eps).mean(0)
    np.testing.assert_allclose(a.values, expect, rtol=1e-5, atol=1e-6)
    assert a.method == "smoothgrad" and a.target_name == "logit[class]"


def test_linear_model_closed_forms():
    # The gradient of a linear model does not move under noise: SmoothGrad = w, SmoothGrad² = w², VarGrad = 0.
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    w = np.asarray(m.params["w"][:, 0])
    key = jax.random.key(1)
    np.testing.assert_allclose(
        smoothgrad(m, x, key=key, target=0, n_samples=8).values, np.broadcast_to(w, (3, 5)), rtol=1e-6
    )
    np.testing.assert_allclose(
        smoothgrad_sq(m, x, key=key, target=0, n_samples=8).values, np.broadcast_to(w**2, (3, 5)), rtol=1e-6
    )
    np.testing.assert_array_equal(vargrad(m, x, key=key, target=0, n_samples=8).values, 0.0)


def test_smoothgrad_over_integrated_gradients_of_a_linear_model():
    # IG from the zero baseline of F = x·w + b is (x_s - 0) ⊙ w at any step count (the weights sum to 1), so
    # SmoothGrad over IG is w ⊙ mean_s(x + σ ε_s), SmoothGrad² is mean_s (w ⊙ x_s)², VarGrad is w² var_s(x_s).
    m, key, n, level = linear_model(), jax.random.key(5), 64, 0.2
    x = np.asarray(jax.random.normal(jax.random.key(3), (4, 5)))
    w = np.asarray(m.params["w"][:, 1], np.float64)
    xs = x + row_sigma(x, level) * reproduce_noise(key, n, 4, (5,))  # (n, N, 5): the noisy inputs used
    ig = w * xs  # (n, N, 5): IG at each of them
    opts = dict(key=key, target=1, n_samples=n, noise_level=level, method="integrated_gradients")
    mean = smoothgrad(m, x, method_options={"steps": 3}, **opts)
    np.testing.assert_allclose(mean.values, ig.mean(0), rtol=1e-5, atol=1e-6)
    # In expectation E[x_s] = x: within four standard errors of the n draws.
    assert_within_standard_errors(mean.values, ig, w * x, eps=1e-5)
    sq = smoothgrad_sq(m, x, method_options={"steps": 3, "rule": "riemann_middle"}, **opts)
    np.testing.assert_allclose(sq.values, (ig**2).mean(0), rtol=1e-5, atol=1e-6)
    var = vargrad(m, x, method_options={"steps": 3}, **opts)
    np.testing.assert_allclose(var.values, ig.var(0), rtol=1e-4, atol=1e-6)
    # Chunking (one sample x one noise draw of 3 steps per call) changes nothing.
    small = smoothgrad(m, x, method_options={"steps": 3}, memory_budget=3 * chunking.row_bytes(m), **opts)
    np.testing.assert_allclose(small.values, mean.values, rtol=1e-5, atol=1e-7)


def test_quadratic_model_moments():
    # g_s = 2c(x + σ ε_s): E g = 2cx, E g² = 4c²(x² + σ²), and the (1/n) sample variance has E = (n-1)/n · 4c²σ².
    m = quadratic_model()
    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 4)), np.float64)
    c = np.asarray(m.params["c"][:, 0], np.float64)
    key, n, level = jax.random.key(2), 4000, 0.2
    sigma = row_sigma(x, level)
    g = 2 * c * (x + sigma * reproduce_noise(key, n, 2, (4,)))  # (n, 2, 4): the gradients averaged
    mean = smoothgrad(m, x, key=key, target=0, n_samples=n, noise_level=level).values
    var = vargrad(m, x, key=key, target=0, n_samples=n, noise_level=level).values
    sq = smoothgrad_sq(m, x, key=key, target=0, n_samples=n, noise_level=level).values
    scale = np.abs(g).max()
    np.testing.assert_allclose(mean, g.mean(0), atol=1e-5 * scale)  # the same draws, float32 sums
    assert_within_standard_errors(mean, g, 2 * c * x, eps=1e-5 * scale)
    assert_within_standard_errors(sq, g**2, 4 * c**2 * (x**2 + sigma**2), eps=1e-5 * scale**2)
    dev2 = (g - g.mean(0)) ** 2  # the sample variance is the mean of these
    assert_within_standard_errors(var, dev2, (n - 1) / n * 4 * c**2 * sigma**2, eps=1e-5 * scale**2)
    np.testing.assert_allclose(sq, var + np.asarray(mean) ** 2, rtol=1e-4)


def test_same_key_same_result_and_chunking_invariance(linen_cnn):
    x, key = images(), jax.random.key(7)
    row = chunking.row_bytes(linen_cnn)
    for fn in (smoothgrad, vargrad):
        a = fn(linen_cnn, x, key=key, n_samples=5)
        for budget in (4 * row, row):  # 2 rows x 2 samples per call (last padded); 1 row x 1 sample per call
            b = fn(linen_cnn, x, key=key, n_samples=5, memory_budget=budget)
            np.testing.assert_allclose(b.values, a.values, rtol=1e-5, atol=1e-7)
        c = fn(linen_cnn, x, key=jax.random.key(8), n_samples=5)
        assert not np.allclose(a.values, c.values)
        assert a.values.shape == x.shape and a.values.dtype == x.dtype
        again = fn(linen_cnn, x, key=key, n_samples=5)
        np.testing.assert_array_equal(again.values, a.values)
        # Row i's noise depends on (key, sample, i) only: the first row alone gets the same map.
        first = fn(linen_cnn, x[:1], key=key, n_samples=5)
        np.testing.assert_allclose(first.values, a.values[:1], rtol=1e-5, atol=1e-7)


def test_target_all_equals_stacked(linen_cnn):
    x, key = images(2), jax.random.key(1)
    a = vargrad(linen_cnn, x, key=key, n_samples=3, target="all")
    assert a.values.shape == (2, 3, 8, 8, 3)
    for k in range(3):
        np.testing.assert_allclose(
            a.values[:, k], vargrad(linen_cnn, x, key=key, n_samples=3, target=k).values, rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize("statistic", ["mean", "square", "variance"])
def test_pure_core_under_jit_and_vmap_equals_the_wrapper(linen_cnn, statistic):
    x, key, targets = images(3, seed=2), jax.random.key(4), np.array([2, 0, 1])
    want = noise_tunnel(linen_cnn, x, key=key, statistic=statistic, target=targets, n_samples=4, noise_level=0.1)
    p = prepare(linen_cnn, x, target=targets)
    sigma = jnp.asarray(noise_sigma(linen_cnn, np.asarray(x), 0.1))
    opts = dict(method=vanilla_gradient_core, options=(("absolute", False),), statistic=statistic, n_samples=4)
    core = jax.jit(noise_tunnel_core, static_argnums=0, static_argnames=tuple(opts))
    got = core(linen_cnn.apply, linen_cnn.params, p.x, p.target, key=key, sigma=sigma, **opts)
    assert got.method == want.method
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6)
    # One row at a time: row_ids keep each row's own noise stream.
    rows = jax.tree_util.tree_map(lambda a: a[:, None], p.target)

    def one(xi, ti, si, ri):
        return noise_tunnel_core(linen_cnn.apply, linen_cnn.params, xi, ti, key=key, sigma=si, row_ids=ri, **opts)

    per_row = jax.jit(jax.vmap(one))(p.x[:, None], rows, sigma[:, None], jnp.arange(3)[:, None])
    np.testing.assert_allclose(per_row.values[:, 0], want.values, rtol=1e-5, atol=1e-6)


TUNNELABLE = [n for n, i in registry.METHODS.items() if i.core is not None and not i.needs_key]


@pytest.mark.parametrize("name", TUNNELABLE)
def test_zero_noise_gives_the_wrapped_method(linen_cnn, name):
    # σ = 0: every sample is x itself, so SmoothGrad is the method's own map and VarGrad is 0.
    x, key = images(2, seed=5), jax.random.key(0)
    # a small step ceiling keeps the adaptive schedule (padded to max_steps) cheap to compile
    opts = {"max_steps": 64} if name == "integrated_gradients_adaptive" else {}
    want = registry.call(name, linen_cnn, x, target=1, **opts).values
    kw = dict(key=key, target=1, n_samples=2, noise_level=0.0, method=name, method_options=opts)
    got = smoothgrad(linen_cnn, x, **kw)
    assert got.values.shape == want.shape
    np.testing.assert_allclose(got.values, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max()))
    var = vargrad(linen_cnn, x, **kw)
    np.testing.assert_allclose(var.values, 0.0, atol=1e-6 * float(np.abs(want).max()) ** 2)


def test_statistic_cores_refuse_tap_methods_and_take_sigma_from_the_range(linen_cnn, nnx_mlp):
    info = registry.get("smoothgrad")
    with pytest.raises(ValueError, match=r"'grad_cam' needs model.tap: call noise_tunnel_core with model.tap"):
        info.core_options(linen_cnn, info.check_options({"method": "grad_cam"}))
    opts = info.core_options(linen_cnn, info.check_options({"n_samples": 3, "method": "gradient_x_input"}))
    assert opts["value_range"] == (0.0, 1.0) and opts["options"] == () and opts["n_samples"] == 3
    assert (
        info.rows_per_sample(linen_cnn, info.check_options({"n_samples": 3, "method": "integrated_gradients"})) == 150
    )
    # No declared range: σ is each row's max - min under jit too, as noise_sigma on the host.
    x = np.asarray(jax.random.normal(jax.random.key(2), (4, 5)))
    p, key = prepare(nnx_mlp, x, target=1), jax.random.key(4)
    kwargs = info.core_options(nnx_mlp, info.check_options({"n_samples": 3, "noise_level": 0.2}))
    got = jax.jit(functools.partial(smoothgrad_core, key=key, **kwargs), static_argnums=0)(
        nnx_mlp.apply, nnx_mlp.params, p.x, p.target
    )
    want = noise_tunnel_core(
        nnx_mlp.apply, nnx_mlp.params, p.x, p.target, key=key, sigma=noise_sigma(nnx_mlp, x, 0.2), n_samples=3,
        method=vanilla_gradient_core, options=kwargs["options"],
    )  # fmt: skip
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"noise_level": -0.1}, ValueError, r"expected noise_level >= 0, got -0.1"),
        ({"noise_level": float("nan")}, ValueError, r"expected noise_level >= 0, got nan"),
        ({"n_samples": 0}, ValueError, r"expected n_samples >= 1, got 0"),
        ({"n_samples": 2.0}, TypeError, r"expected n_samples to be an int"),
        ({"statistic": "median"}, ValueError, r"unknown statistic 'median'"),
        ({"key": None}, ValueError, r"pass an explicit key"),
        ({"method": "lime"}, ValueError, r"unknown saliency method 'lime'; expected one of \["),
        ({"method": "smoothgrad"}, ValueError, r"deterministic methods with a pure core; 'smoothgrad' is not one"),
        ({"method": "expected_gradients"}, ValueError, r"'expected_gradients' is not one"),
        ({"method_options": {"stepz": 3}}, ValueError, r"unknown option\(s\) \['stepz'\] for 'vanilla_gradient'"),
        (
            {"method": "integrated_gradients", "method_options": {"steps": 0}},
            ValueError,
            r"expected steps >= 1, got 0",
        ),
        (
            {"method": "integrated_gradients", "method_options": {"baseline": "blur"}},
            ValueError,
            r"integrated_gradients uses the zero baseline",
        ),
        (
            {"method": "integrated_gradients", "method_options": {"baseline": np.zeros((8, 8, 3), np.float32)}},
            ValueError,
            r"integrated_gradients uses the zero baseline",
        ),
        ({"target": 5}, ValueError, r"class index 5 out of range"),
        ({"memory_budget": 0}, ValueError, r"memory_budget \(bytes\) >= 1, got 0"),
    ],
)
def test_bad_input_raises_before_compilation(linen_cnn, kwargs, error, match):
    # 13 rows, a batch size no other test uses: nothing is cached, so any compilation before the error is seen.
    kwargs, x = {"key": jax.random.key(0), **kwargs}, images(13)
    with CompileCounter() as c, pytest.raises(error, match=match):
        noise_tunnel(linen_cnn, x, **kwargs)
    assert c.count == 0


def test_vargrad_is_exactly_zero_for_a_constant_gradient():
    # A linear model's gradient does not move under noise; E[g²] - E[g]² in float32 leaves
    # rounding residue of either sign at |w|² ~ 1e6, the centred accumulation leaves none.
    m = linear_model()
    big = type(m)(
        apply=m.apply, params={"w": m.params["w"] * 1e3, "b": m.params["b"]}, input_spec=m.input_spec, name="big"
    )
    x = jax.random.normal(jax.random.key(0), (4, 5))
    v = np.asarray(vargrad(big, x, key=jax.random.key(1), target=0, n_samples=7).values)
    np.testing.assert_array_equal(v, 0.0)


def test_sigma_comes_from_the_declared_range_even_for_a_constant_input():
    # Quadratic: g = 2c(x + ε), so VarGrad / (4c²) is the (1/n) sample variance of n = 32 draws of σε with
    # σ = 0.1 · (10 - 0) = 1 although x is constant: E = (n-1)/n. 16 rows x 4 features are 64 independent
    # estimates; their mean is checked within four of its standard errors.
    base = quadratic_model()
    m = type(base)(
        apply=base.apply, params=base.params, input_spec=explain.InputSpec(shape=(4,), value_range=(0.0, 10.0))
    )
    x, n = np.zeros((16, 4), np.float32), 32
    v = np.asarray(vargrad(m, x, key=jax.random.key(0), target=0, n_samples=n, noise_level=0.1).values, np.float64)
    c = np.asarray(m.params["c"][:, 0], np.float64)
    estimates = (v / (4 * c**2)).reshape(-1)
    assert_within_standard_errors(estimates.mean(), estimates, (n - 1) / n, eps=1e-5)
    # And exactly the sample variance of the documented draws, σ = 1.
    eps = reproduce_noise(jax.random.key(0), n, 16, (4,))
    np.testing.assert_allclose(v, 4 * c**2 * eps.var(0), rtol=1e-4, atol=1e-6)


def test_sigma_zero_raises_before_compilation():
    m, x, key = linear_model(), np.ones((2, 5), np.float32), jax.random.key(0)  # constant rows, no declared range
    with CompileCounter() as c, pytest.raises(ValueError, match=r"sigma = 0 for sample\(s\) \[0, 1\].*value_range"):
        smoothgrad(m, x, key=key, target=0)
    assert c.count == 0
    a = smoothgrad(linear_model(), x, key=jax.random.key(0), target=0, noise_level=0.0, n_samples=2)
    np.testing.assert_allclose(a.values, np.broadcast_to(linear_model().params["w"][:, 0], (2, 5)), rtol=1e-6)


@pytest.mark.parametrize(
    ("key", "error", "match"),
    [
        (jax.numpy.zeros((2,), jax.numpy.float32), TypeError, r"uint32 \(2,\) key data, got float32"),
        (jax.numpy.arange(3, dtype=jax.numpy.uint32), TypeError, r"got uint32 array of shape \(3,\)"),
        (jax.random.split(jax.random.key(0), 2), ValueError, r"single PRNG key"),
    ],
)
def test_malformed_key_raises(key, error, match):
    with pytest.raises(error, match=match):
        smoothgrad(linear_model(), np.ones((1, 5)), key=key, target=0)


def test_raw_key_data_gives_the_same_stream_as_its_typed_key():
    m, x = quadratic_model(), np.asarray(jax.random.normal(jax.random.key(0), (2, 4)))
    typed = smoothgrad(m, x, key=jax.random.key(3), target=0, n_samples=4).values
    raw = smoothgrad(m, x, key=jax.random.PRNGKey(3), target=0, n_samples=4).values
    np.testing.assert_array_equal(typed, raw)
