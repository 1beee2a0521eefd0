"""Occlusion: exact on linear models, window bookkeeping, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import images, linear_image_model, linear_model

from explain.saliency.occlusion import occlusion, window_masks


def test_window_one_on_linear_model_is_gradient_times_input():
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    a = occlusion(m, x, target=2, window=1, strides=1, internal_batch_size=6)  # 2 windows per call, padded
    np.testing.assert_allclose(a.values, x * m.params["w"][:, 2], rtol=1e-5, atol=1e-6)


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
    m = linear_image_model()
    x = jax.random.uniform(jax.random.key(2), (2, 6, 6, 2))
    a = occlusion(m, x, target="all", window=(2, 2), strides=(2, 2))
    c = np.asarray(x)[:, None] * np.asarray(m.params["w"]).T.reshape(1, 3, 6, 6, 2)  # (N, K, ...) contributions
    blocks = c.reshape(2, 3, 3, 2, 3, 2, 2).sum(axis=(3, 5, 6), keepdims=True)  # non-overlapping 2x2 windows
    np.testing.assert_allclose(
        a.values, np.broadcast_to(blocks, c.reshape(2, 3, 3, 2, 3, 2, 2).shape).reshape(c.shape), rtol=1e-4, atol=1e-6
    )


def test_bad_windows(linen_cnn):
    with pytest.raises(ValueError, match=r"expected window \(9, 9, 3\) to fit the input \(8, 8, 3\)"):
        occlusion(linen_cnn, images(1), window=9)
    with pytest.raises(ValueError, match=r"expected strides >= 1, got 0"):
        occlusion(linen_cnn, images(1), strides=0)
    with pytest.raises(ValueError, match=r"expected window with 3 entries"):
        occlusion(linen_cnn, images(1), window=(2, 2, 2, 2))
