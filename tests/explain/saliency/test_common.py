"""The saliency building blocks: rows per call (dtype, ``target="all"``, tap-less models), stacked gradients,
weighted sums, completeness deltas, image checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import linear_image_model, linear_model
from testlib import to_float64

from explain import chunking
from explain.gradients import prepare, target_and_grad
from explain.saliency import _common as common


def test_rows_use_dtype_target_all_and_a_conservative_no_tap_estimate(linen_cnn):
    m = linear_image_model()  # no tap: 64 activations per feature assumed, 72 features
    per_row32 = 4 * (3 * 64 * 72 + 4 * 72)
    x = np.zeros((2, 6, 6, 2), np.float32)
    assert common.rows(prepare(m, x, target=0), 10**6) == 10**6 // per_row32
    with jax.enable_x64(True):
        p64 = prepare(to_float64(m), x.astype(np.float64), target=0)
        assert p64.x.dtype == np.float64
        assert common.rows(p64, 10**6) == 10**6 // (2 * per_row32)
    row = chunking.row_bytes(linen_cnn)
    one = common.rows(prepare(linen_cnn, np.zeros((1, 8, 8, 3), np.float32), target=0), 10**7)
    assert one == 10**7 // row
    every = prepare(linen_cnn, np.zeros((1, 8, 8, 3), np.float32), target="all", allow_all=True)
    assert common.rows(every, 10**7) == 10**7 // (3 * row) < one  # K = 3 backward passes per row
    assert common.rows(every, 10**7, forward_only=True) == one  # one forward pass serves every class


def test_grad_stack_is_the_gradient_of_each_stacked_batch(linen_cnn):
    pts = jax.random.uniform(jax.random.key(0), (3, 2, 8, 8, 3))
    p = prepare(linen_cnn, pts[0], target=np.array([2, 1]))
    g, t = common.grad_stack(linen_cnn.apply, linen_cnn.params, pts, p.target)
    assert g.shape == pts.shape and t.shape == (3, 2)
    for c in range(3):
        tc, gc, _ = target_and_grad(linen_cnn.apply, linen_cnn.params, pts[c], p.target)
        np.testing.assert_allclose(g[c], gc, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(t[c], tc, rtol=1e-6)
    np.testing.assert_allclose(common.values_stack(linen_cnn.apply, linen_cnn.params, pts, p.target), t, rtol=1e-6)


def test_weighted_sum_drops_zero_weight_padding_and_expand_like_adds_the_class_axis():
    a = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(common.weighted_sum(jnp.array([1.0, 2.0, 0.0, 0.0]), a), a[0] + 2 * a[1])
    v = jnp.ones((2, 5))
    assert common.expand_like(v, jnp.ones((2, 3, 5))).shape == (2, 1, 5)
    assert common.expand_like(v, jnp.ones((2, 5))).shape == (2, 5)


def test_endpoints_and_delta_of_a_linear_model():
    # F(x) - F(x') = (x - x')·w; IG values (x - x') ⊙ w are complete, so delta is 0 (up to float32 rounding).
    m = linear_model()
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 5)))
    base = np.asarray(jax.random.normal(jax.random.key(2), (3, 5)))
    w = np.asarray(m.params["w"][:, 1])
    p = prepare(m, x, target=1)
    diff = (x - base) @ w
    got = common.endpoints(m.apply, m.params, jnp.asarray(p.x), p.target, jnp.asarray(base))
    np.testing.assert_allclose(got, diff, rtol=1e-5, atol=1e-6)
    values = (x - base) * w
    np.testing.assert_allclose(common.delta(p, values, base, None), 0.0, atol=1e-5)
    np.testing.assert_allclose(common.delta(p, 2 * values, base, 1), diff, rtol=1e-5, atol=1e-6)  # 1 byte: 1 row/call


def test_check_image_and_value_range(linen_cnn):
    assert common.check_image(linen_cnn, what="grad_cam") == (8, 8, 3)
    with pytest.raises(ValueError, match=r"grad_cam needs image inputs of shape \(N, H, W, C\); .* takes \(N, 5\)"):
        common.check_image(linear_model(), what="grad_cam")
    assert common.value_range(linear_model()) == (0.0, 1.0)  # none declared
    assert tuple(common.value_range(linen_cnn)) == (0.0, 1.0)
