"""Occlusion: exact on linear models, window bookkeeping, chunking over samples × windows, pure core, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import CompileCounter, assert_core_equals_wrapper, images, linear_image_model, linear_model

from explain import chunking
from explain.gradients import prepare
from explain.saliency.occlusion import (
    n_windows,
    occlusion,
    occlusion_core,
    resolve_window,
    window_counts,
    window_masks,
)


def test_window_one_on_linear_model_is_gradient_times_input():
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    budget = 6 * chunking.row_bytes(m)  # 3 samples x 2 windows per call, last window chunk padded
    a = occlusion(m, x, target=2, window=1, strides=1, memory_budget=budget)
    np.testing.assert_allclose(a.values, x * m.params["w"][:, 2], rtol=1e-5, atol=1e-6)
    assert a.method == "occlusion"


def test_window_average_by_hand():
    m = linear_model()
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 5)))
    c = x * np.asarray(m.params["w"][:, 0])  # each feature's contribution
    a = occlusion(m, x, target=0, window=2, strides=1, baseline_value=0.0).values
    drops = [c[:, j : j + 2].sum(1) for j in range(4)]  # windows [0,1], [1,2], [2,3], [3,4]
    expect = np.stack(
        [drops[0], (drops[0] + drops[1]) / 2, (drops[1] + drops[2]) / 2, (drops[2] + drops[3]) / 2, drops[3]], 1
    )
    np.testing.assert_allclose(a, expect, rtol=1e-5, atol=1e-6)


def test_images_all_channels_and_edges_covered():
    masks = window_masks((6, 6, 2), (4, 4, 2), (3, 3, 2))
    assert masks.shape[0] == 4 and masks.any(0).all()  # starts 0 and 2 (clamped) per axis
    assert n_windows((6, 6, 2), (4, 4, 2), (3, 3, 2)) == 4
    np.testing.assert_array_equal(window_counts((6, 6, 2), (4, 4, 2), (3, 3, 2)), masks.sum(0))
    m = linear_image_model()
    x = jax.random.uniform(jax.random.key(2), (2, 6, 6, 2))
    a = occlusion(m, x, target="all", window=(2, 2), strides=(2, 2))
    c = np.asarray(x)[:, None] * np.asarray(m.params["w"]).T.reshape(1, 3, 6, 6, 2)  # (N, K, ...) contributions
    blocks = c.reshape(2, 3, 3, 2, 3, 2, 2).sum(axis=(3, 5, 6), keepdims=True)  # non-overlapping 2x2 windows
    np.testing.assert_allclose(
        a.values, np.broadcast_to(blocks, c.reshape(2, 3, 3, 2, 3, 2, 2).shape).reshape(c.shape), rtol=1e-4, atol=1e-6
    )


def _reference(model, x, target, window, strides, value):
    """The definition, one window at a time: mean over covering windows of F(x) - F(x with W_k := value)."""
    masks = window_masks(model.input_spec.shape, window, strides)
    t = prepare(model, x, target=target).target
    fx = np.asarray(t(model.apply(model.params, x)), np.float64)
    total = np.zeros(x.shape, np.float64)
    for mk in masks:
        drop = fx - np.asarray(t(model.apply(model.params, np.where(mk, value, x))), np.float64)
        total += drop[:, None, None, None] * mk
    return total / masks.sum(0)


def test_matches_the_definition_and_memory_budget_does_not_change_it(linen_cnn):
    # Overlapping windows, edge clamping (8 - 3 = 5 is not a multiple of 2) and a nonzero value.
    x = np.asarray(images(3))
    kw = dict(window=(3, 3), strides=(2, 2), baseline_value=0.5, target=np.array([0, 2, 1]))
    assert n_windows((8, 8, 3), (3, 3, 3), (2, 2, 3)) == 16
    expect = _reference(linen_cnn, x, kw["target"], (3, 3, 3), (2, 2, 3), 0.5)
    whole = occlusion(linen_cnn, x, **kw)
    np.testing.assert_allclose(whole.values, expect, rtol=1e-4, atol=1e-6)
    row = chunking.row_bytes(linen_cnn)
    # 2 samples (+ a padded 1) x 1 window per call; 3 samples x 5 windows (16 = 3·5 + 1, last chunk padded)
    for rows in (2, 15):
        part = occlusion(linen_cnn, x, memory_budget=rows * row, **kw)
        np.testing.assert_allclose(part.values, whole.values, rtol=1e-5, atol=1e-7)


def test_core_under_jit_and_vmap_equals_the_wrapper(linen_cnn):
    x, cls = images(3), np.array([1, 0, 2])
    kw = dict(window=(3, 3, 3), strides=(2, 2, 3), baseline_value=0.25)
    want = occlusion(linen_cnn, x, target=cls, **kw)
    t = prepare(linen_cnn, x, target=cls).target
    assert_core_equals_wrapper(occlusion_core, linen_cnn, x, t, want, static=("window", "strides"), **kw)
    # the core resolves window/strides as the wrapper does (defaults, (h, w) on images)
    np.testing.assert_allclose(
        occlusion_core(linen_cnn.apply, linen_cnn.params, x, t, window=(2, 2)).values,
        occlusion(linen_cnn, x, target=cls, window=(2, 2)).values,
        rtol=1e-5,
        atol=1e-7,
    )
    assert resolve_window((8, 8, 3)) == ((1, 1, 3), (1, 1, 3))


def test_bad_windows(linen_cnn):
    x = images(1)
    with CompileCounter() as c:
        with pytest.raises(ValueError, match=r"expected window \(9, 9, 3\) to fit the input \(8, 8, 3\)"):
            occlusion(linen_cnn, x, window=9)
        with pytest.raises(ValueError, match=r"expected strides >= 1, got 0"):
            occlusion(linen_cnn, x, strides=0)
        with pytest.raises(ValueError, match=r"expected window with 3 entries"):
            occlusion(linen_cnn, x, window=(2, 2, 2, 2))
        with pytest.raises(ValueError, match=r"expected baseline_value >= -inf, got nan"):
            occlusion(linen_cnn, x, baseline_value=float("nan"))
    assert c.count == 0
