"""Shared saliency plumbing: chunk sizing by dtype and for tap-less models, row mapping with per-sample aux."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from saliency_testlib import linear_image_model

from explain.saliency import _common as common


def test_rows_per_chunk_uses_dtype_and_a_conservative_no_tap_estimate(linen_cnn):
    m = linear_image_model()  # no tap: 64 activations per feature assumed, 72 features
    per_row32 = 4 * (3 * 64 * 72 + 4 * 72)
    assert common.rows_per_chunk(m, memory_budget=10**6, internal_batch_size=None, all_classes=False) == (
        10**6 // per_row32
    )
    f64 = common.rows_per_chunk(m, memory_budget=10**6, internal_batch_size=None, all_classes=False, dtype=jnp.float64)
    assert f64 == 10**6 // (2 * per_row32)
    k = common.rows_per_chunk(linen_cnn, memory_budget=10**7, internal_batch_size=None, all_classes=True)
    one = common.rows_per_chunk(linen_cnn, memory_budget=10**7, internal_batch_size=None, all_classes=False)
    assert k == one // 3 or k == max(1, 10**7 // (3 * (10**7 // max(one, 1))))  # K = 3 classes
    assert k < one


def test_map_rows_slices_per_sample_aux_and_passes_scalars():
    x, labels = jnp.arange(5.0)[:, None], jnp.arange(5) * 10
    got = common.map_rows(lambda xc, a, b: xc[:, 0] + a + b, x, labels, jnp.ones((5,)), batch=2)
    np.testing.assert_array_equal(got, np.arange(5) * 11 + 1)
    got = common.map_rows(lambda xc, a: xc[:, 0] + a, x, jnp.asarray(7), batch=3)
    np.testing.assert_array_equal(got, np.arange(5) + 7)
