"""Integrated Gradients: quadrature, baselines, closed forms, completeness, chunking, adaptive steps, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images, linear_model, quadratic_model, shapes
from testlib import to_float64

from explain import chunking
from explain.gradients import prepare
from explain.saliency import integrated
from explain.saliency.integrated import (
    integrated_gradients,
    integrated_gradients_adaptive,
    integrated_gradients_core,
    quadrature,
)


@pytest.mark.parametrize("rule", integrated.RULES)
def test_quadrature_weights_sum_to_one_and_nodes_in_unit_interval(rule):
    a, w = quadrature(rule, 7)
    assert a.shape == w.shape == (7,)
    assert np.isclose(w.sum(), 1.0) and (a >= 0).all() and (a <= 1).all()


def test_gauss_legendre_exact_for_degree_2n_minus_1():
    a, w = quadrature("gauss_legendre", 4)
    for deg in range(8):
        assert np.isclose((w * a**deg).sum(), 1.0 / (deg + 1), atol=1e-12)
    assert not np.isclose((w * a**8).sum(), 1.0 / 9, atol=1e-9)


def test_riemann_nodes_match_captum():
    np.testing.assert_allclose(quadrature("riemann_left", 4)[0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(quadrature("riemann_right", 4)[0], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(quadrature("riemann_middle", 2)[0], [0.25, 0.75])
    np.testing.assert_allclose(quadrature("riemann_trapezoid", 3)[1], [0.25, 0.5, 0.25])


@pytest.mark.parametrize("rule", integrated.RULES)
def test_linear_model_ig_equals_gradient_times_input_minus_baseline(rule):
    with jax.enable_x64(True):
        m = to_float64(linear_model())
        x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64)
        b = jax.random.normal(jax.random.key(1), (5,), jnp.float64)
        a = integrated_gradients(m, x, target=2, baseline=b, steps=3, rule=rule)
        np.testing.assert_allclose(a.values, (x - b) * m.params["w"][:, 2], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.convergence_delta, 0.0, atol=1e-12)
        assert a.values.dtype == jnp.float64 and a.steps.tolist() == [3] * 4


def test_quadratic_model_midpoint_is_exact_and_left_rule_is_not():
    # IG_i = x_i ∫ 2 c_i α x_i dα = c_i x_i²; the integrand is linear in α.
    with jax.enable_x64(True):
        m = to_float64(quadratic_model())
        x = jax.random.normal(jax.random.key(0), (3, 4), jnp.float64)
        expect = m.params["c"][:, 1] * x**2
        mid = integrated_gradients(m, x, target=1, steps=1, rule="riemann_middle")
        np.testing.assert_allclose(mid.values, expect, rtol=1e-12)
        left = integrated_gradients(m, x, target=1, steps=4, rule="riemann_left")
        np.testing.assert_allclose(left.values, expect * 0.75, rtol=1e-12)  # Σ 2k/16 for k < 4 = 3/4
        np.testing.assert_allclose(left.convergence_delta, -0.25 * expect.sum(1), rtol=1e-12)


def test_chunking_does_not_change_the_result(linen_cnn):
    x_img = images()
    row = chunking.row_bytes(linen_cnn)
    full = integrated_gradients(linen_cnn, x_img, steps=7)
    one_step = integrated_gradients(linen_cnn, x_img, steps=7, memory_budget=2 * row)  # 2 samples x 1 step per call
    odd = integrated_gradients(linen_cnn, x_img, steps=7, memory_budget=6 * row)  # 3 steps, last chunk padded
    one_row = integrated_gradients(linen_cnn, x_img, steps=7, memory_budget=row)  # 1 sample x 1 step per call
    for part in (one_step, odd, one_row):
        np.testing.assert_allclose(part.values, full.values, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(part.convergence_delta, full.convergence_delta, rtol=1e-4, atol=1e-6)


def test_pure_core_under_jit_equals_the_chunked_wrapper(linen_cnn):
    x_img = images(3, seed=4)
    base = np.asarray(jax.random.uniform(jax.random.key(9), x_img.shape))
    p = prepare(linen_cnn, x_img, target=np.array([2, 0, 1]))
    core = jax.jit(integrated_gradients_core, static_argnums=0, static_argnames=("steps", "rule"))
    got = core(linen_cnn.apply, linen_cnn.params, p.x, p.target, baseline=base, steps=9, rule="riemann_middle")
    want = integrated_gradients(
        linen_cnn,
        x_img,
        target=np.array([2, 0, 1]),
        baseline=base,
        steps=9,
        rule="riemann_middle",
        memory_budget=4 * chunking.row_bytes(linen_cnn),  # 3 samples x 1 step per call
    )
    assert got.method == want.method == "integrated_gradients"
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.convergence_delta, want.convergence_delta, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(got.steps, [9, 9, 9])


def test_target_all_equals_stacked_single_class_calls(linen_cnn):
    x_img = images()
    a = integrated_gradients(linen_cnn, x_img, target="all", steps=5)
    assert a.values.shape == (2, 3, 8, 8, 3) and a.convergence_delta.shape == (2, 3)
    for k in range(3):
        single = integrated_gradients(linen_cnn, x_img, target=k, steps=5)
        np.testing.assert_allclose(a.values[:, k], single.values, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a.convergence_delta[:, k], single.convergence_delta, atol=1e-5)


def test_baselines_shapes_and_key_determinism(linen_cnn):
    x_img = images()
    for kind in integrated.BASELINES:
        b = integrated.make_baseline(linen_cnn, x_img, kind, key=jax.random.key(3))
        assert b.shape == x_img.shape
    np.testing.assert_allclose(integrated.make_baseline(linen_cnn, x_img, "constant"), 0.5)
    blur = integrated.make_baseline(linen_cnn, x_img, "blur", blur_sigma=100.0)
    np.testing.assert_allclose(blur, jnp.broadcast_to(x_img.mean((1, 2), keepdims=True), x_img.shape), atol=1e-3)
    u1 = integrated_gradients(linen_cnn, x_img, baseline="uniform", steps=3, key=jax.random.key(5))
    u2 = integrated_gradients(linen_cnn, x_img, baseline="uniform", steps=3, key=jax.random.key(5))
    u3 = integrated_gradients(linen_cnn, x_img, baseline="uniform", steps=3, key=jax.random.key(6))
    np.testing.assert_array_equal(u1.values, u2.values)
    assert not np.allclose(u1.values, u3.values)


def test_baseline_equal_to_input_gives_zero(linen_cnn):
    x_img = images()
    a = integrated_gradients(linen_cnn, x_img, baseline=x_img, steps=3)
    np.testing.assert_array_equal(a.values, 0.0)


def test_completeness_on_64_shapes_images_at_64_gauss_legendre_steps():
    bundle = shapes()
    # Acceptance: median |δ| / |F(x) - F(x')| <= 0.5 %, in equal compiled chunks. The figure on 256
    # images is `python benchmarks/saliency_bench.py --completeness`; 64 keep the suite short.
    x = bundle.dataset.test.x[:64]
    a = integrated_gradients(bundle, x, steps=64)
    diff = a.values.reshape(64, -1).sum(1) - a.convergence_delta
    rel = np.abs(np.asarray(a.convergence_delta)) / np.abs(np.asarray(diff))
    assert np.median(rel) <= 0.005, f"median relative completeness error {np.median(rel):.4%}"


def test_adaptive_reaches_tolerance_on_every_sample_and_reports_steps():
    bundle = shapes()
    x = bundle.dataset.test.x[:4]
    # 40 (sample, node) pairs per call: a call holds the end of one sample's nodes and the start of the next's
    budget = 40 * chunking.row_bytes(bundle.model)
    a = integrated_gradients_adaptive(bundle, x, tolerance=1e-3, start_steps=16, max_steps=1024, memory_budget=budget)
    diff = a.values.reshape(4, -1).sum(1) - a.convergence_delta
    assert (np.abs(a.convergence_delta) <= 1e-3 * (1 + np.abs(diff))).all()
    steps = np.asarray(a.steps)
    assert set(steps.tolist()) <= {16, 32, 64, 128, 256, 512, 1024} and steps.max() > 16  # it had to double
    for k in set(steps.tolist()):  # each sample's sum of pairs is its own IG at its step count
        rows = np.flatnonzero(steps == k)
        plain = integrated_gradients(bundle, x[rows], steps=k)
        np.testing.assert_allclose(np.asarray(a.values)[rows], plain.values, rtol=1e-4, atol=1e-6)


def test_adaptive_stops_at_start_steps_when_exact():
    x = jax.random.normal(jax.random.key(0), (3, 5))
    a = integrated_gradients_adaptive(linear_model(), x, target=0, start_steps=2)
    assert a.steps.tolist() == [2, 2, 2]


def test_adaptive_core_is_complete_and_keeps_each_row_at_its_first_passing_round(linen_cnn):
    # Left Riemann's error halves per doubling; these rows pass 0.03 at different rounds, so masking matters.
    x, classes, tol = images(3, seed=6), np.array([2, 0, 1]), 0.03
    p = prepare(linen_cnn, x, target=classes)
    opts = dict(tolerance=tol, start_steps=2, max_steps=64, rule="riemann_left")
    core = jax.jit(
        integrated.integrated_gradients_adaptive_core, static_argnums=0, static_argnames=(*opts, "chunk", "group")
    )
    a = core(linen_cnn.apply, linen_cnn.params, p.x, p.target, **opts)
    out = np.asarray(linen_cnn.apply(linen_cnn.params, jnp.concatenate([p.x, jnp.zeros_like(p.x)])), np.float64)
    diff = out[np.arange(3), classes] - out[np.arange(3) + 3, classes]  # F(x) - F(0)
    sums = np.asarray(a.values, np.float64).reshape(3, -1).sum(1)
    np.testing.assert_allclose(a.convergence_delta, sums - diff, atol=1e-5)  # δ = Σ values - (F(x) - F(x'))
    assert (np.abs(a.convergence_delta) <= tol * (1 + np.abs(diff))).all()  # complete within the tolerance
    steps = np.asarray(a.steps)
    assert len(set(steps.tolist())) > 1, steps
    for i, s in enumerate(steps):  # the first count that passes, and exactly IG's values at it
        fixed = integrated_gradients_core(
            linen_cnn.apply, linen_cnn.params, p.x, p.target, steps=int(s), rule="riemann_left"
        )
        np.testing.assert_allclose(a.values[i], fixed.values[i], rtol=1e-5, atol=1e-6)
        if s > 2:
            half = integrated_gradients_core(
                linen_cnn.apply, linen_cnn.params, p.x, p.target, steps=int(s) // 2, rule="riemann_left"
            )
            assert abs(float(half.convergence_delta[i])) > tol * (1 + abs(diff[i]))
    # Two rows per group (the last group clamped back over the first) and 4 steps per call: the same result.
    b = core(linen_cnn.apply, linen_cnn.params, p.x, p.target, chunk=4, group=2, **opts)
    np.testing.assert_array_equal(b.steps, a.steps)
    np.testing.assert_allclose(b.values, a.values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, r"steps >= 1, got 0"),
        ({"steps": 1, "rule": "riemann_trapezoid"}, ValueError, r"steps >= 2"),
        ({"steps": 2.5}, TypeError, r"steps to be an int"),
        ({"steps": 10_001}, ValueError, r"steps <= 10000, got 10001"),
        ({"rule": "simpson"}, ValueError, r"unknown rule 'simpson'; expected one of"),
        ({"baseline": np.zeros((2, 2))}, ValueError, r"expected baseline of shape \(13, 8, 8, 3\)"),
        ({"baseline": np.full((8, 8, 3), np.nan)}, ValueError, r"expected a finite baseline"),
        ({"baseline": "mean"}, ValueError, r"unknown baseline 'mean'"),
        ({"baseline": "uniform"}, ValueError, r"pass an explicit key"),
        ({"target": 7}, ValueError, r"class index 7 out of range"),
    ],
)
@pytest.mark.parametrize("fn", [integrated_gradients, integrated_gradients_adaptive])
def test_bad_input_raises_before_compilation(linen_cnn, fn, kwargs, error, match):
    # 13 rows, a batch size no other test uses: nothing is cached, so any compilation before the error is seen.
    x_img, compiles = images(13), CompileCounter()
    if fn is integrated_gradients_adaptive and "steps" in kwargs:  # the adaptive variant names its start_steps
        kwargs = {("start_steps" if k == "steps" else k): v for k, v in kwargs.items()}
        match = "start_" + match
    with compiles, pytest.raises(error, match=match):
        fn(linen_cnn, x_img, **kwargs)
    assert compiles.count == 0


def test_adaptive_bad_options(linen_cnn):
    x_img = images()
    with pytest.raises(ValueError, match=r"max_steps >= start_steps \(16\), got 8"):
        integrated_gradients_adaptive(linen_cnn, x_img, max_steps=8)
    with pytest.raises(ValueError, match=r"expected max_steps <= 10000, got 10001"):
        integrated_gradients_adaptive(linen_cnn, x_img, max_steps=10_001)
    with pytest.raises(ValueError, match=r"tolerance > 0"):
        integrated_gradients_adaptive(linen_cnn, x_img, tolerance=0.0)
    with pytest.raises(ValueError, match=r"target='all' is not supported"):
        integrated_gradients_adaptive(linen_cnn, x_img, target="all")


def test_adaptive_doubling_does_not_recompile():
    # Left Riemann on a quadratic has relative error 1/steps, so all 5 samples double 2 -> 64.
    m, x = quadratic_model(), jax.random.normal(jax.random.key(0), (5, 4))
    opts = dict(target=1, rule="riemann_left", start_steps=2, memory_budget=64 * chunking.row_bytes(m))
    integrated_gradients_adaptive(m, x, max_steps=4, **opts)  # compiles the one (bucket, chunk) shape
    with CompileCounter() as c:
        a = integrated_gradients_adaptive(m, x, max_steps=64, **opts)
    assert a.steps.tolist() == [64] * 5
    assert c.count == 0, f"{c.count} compilations over 5 doublings"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"memory_budget": 2.0}, TypeError, r"memory_budget \(bytes\) to be an int"),
        ({"memory_budget": 0}, ValueError, r"memory_budget \(bytes\) >= 1, got 0"),
        ({"memory_budget": -5}, ValueError, r"memory_budget \(bytes\) >= 1, got -5"),
    ],
)
@pytest.mark.parametrize("fn", [integrated_gradients, integrated_gradients_adaptive])
def test_chunking_options_validated_before_compilation(linen_cnn, fn, kwargs, error, match):
    x_img, compiles = images(), CompileCounter()
    with compiles, pytest.raises(error, match=match):
        fn(linen_cnn, x_img, **kwargs)
    assert compiles.count == 0
