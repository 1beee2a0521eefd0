"""Per-pixel relevance and the units (pixels, patches, features) faithfulness metrics remove."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from beartype import beartype
from jaxtyping import jaxtyped

from explain.metrics import pixel_relevance
from explain.metrics.relevance import ranks, unit_ids, unit_relevance


def test_pixel_relevance_sums_channels_of_magnitudes_or_values():
    a = np.array([[[[1.0, -3.0], [0.5, 0.5]]]])  # (1, 1, 2, 2)
    np.testing.assert_allclose(jaxtyped(typechecker=beartype)(pixel_relevance)(a), [[[4.0, 1.0]]])
    np.testing.assert_allclose(pixel_relevance(a, reduce="sum"), [[[-2.0, 1.0]]])


def test_patch_units_cover_edges_and_sum_their_pixels():
    ids, n = unit_ids((5, 5, 3), 2)  # 3 x 3 patches, the last row and column one pixel wide
    assert n == 9 and ids[0, 0] == ids[1, 1] == 0 and ids[4, 4] == 8 and ids[0, 4] == 2
    r = jnp.arange(25.0).reshape(1, 5, 5)
    np.testing.assert_allclose(unit_relevance(r, jnp.asarray(ids), n)[0, 0], 0 + 1 + 5 + 6)
    assert unit_ids((7,), 1)[1] == 7


def test_ranks_break_ties_by_position():
    np.testing.assert_array_equal(ranks(jnp.array([[1.0, 3.0, 1.0, 3.0]])), [[2, 0, 3, 1]])
    np.testing.assert_array_equal(ranks(jnp.array([[1.0, 3.0, 1.0]]), descending=False), [[0, 2, 1]])


def test_errors():
    with pytest.raises(ValueError, match=r"image attributions of shape \(N, H, W, C\), got shape \(2, 3\)"):
        pixel_relevance(np.ones((2, 3)))
    with pytest.raises(ValueError, match="unknown reduce 'abs'"):
        pixel_relevance(np.ones((1, 2, 2, 1)), reduce="abs")
    with pytest.raises(ValueError, match=r"patch <= 4 for images of 4x6"):
        unit_ids((4, 6, 1), 5)
