"""Visualisation: channel reductions, percentile clipping, colormaps centred on zero, overlays, grids, PNG export."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explain import viz


def test_reductions():
    a = np.array([[[1.0, -3.0], [0.0, 2.0]]])  # (1, 2, 2)
    np.testing.assert_allclose(viz.reduce_channels(a, "sum"), [[-2.0, 2.0]])
    np.testing.assert_allclose(viz.reduce_channels(a, "abs_sum"), [[4.0, 2.0]])
    np.testing.assert_allclose(viz.reduce_channels(a, "abs_max"), [[3.0, 2.0]])
    np.testing.assert_allclose(viz.reduce_channels(a, "l2"), [[np.sqrt(10), 2.0]])
    with pytest.raises(ValueError, match=r"unknown channel reduction 'max'"):
        viz.reduce_channels(a, "max")


def test_percentile_clipping_and_signed_centre():
    m = np.arange(100, dtype=float).reshape(10, 10)
    n = viz.normalize(m, percentile=50)
    assert n.max() == 1.0 and np.isclose(n[0, 0], 0.0) and (n >= 0.5).sum() > 50 - 1  # top half saturates
    s = viz.normalize(np.array([[-2.0, 0.0, 1.0]]), signed=True, percentile=100)
    np.testing.assert_allclose(s, [[0.0, 0.5, 0.75]])
    np.testing.assert_array_equal(viz.normalize(np.zeros((3, 3))), 0.0)
    with pytest.raises(ValueError, match=r"expected 0 < percentile <= 100, got 0"):
        viz.normalize(m, percentile=0)


def test_colormaps_come_from_matplotlib_and_zero_is_the_diverging_centre():
    from matplotlib import colormaps

    img = np.asarray(viz.to_image(np.array([[-1.0, 0.0, 1.0]]), signed=True, percentile=100))
    centre = (np.asarray(colormaps[viz.DIVERGING_CMAP](0.5)[:3]) * 255).round()
    np.testing.assert_allclose(img[0, 1], centre, atol=1)
    assert img[0, 2, 0] > img[0, 2, 2] and img[0, 0, 2] > img[0, 0, 0]  # red positive, blue negative
    with pytest.raises(ValueError, match=r"unknown colormap 'nope'"):
        viz.to_image(np.ones((2, 2)), cmap="nope")


def test_overlay_opacity():
    image = np.full((4, 4, 3), 0.2)
    attr = np.zeros((4, 4))
    attr[0, 0] = 1.0
    np.testing.assert_array_equal(np.asarray(viz.overlay(image, attr, alpha=0.0)), np.round(image * 255))
    full = np.asarray(viz.overlay(image, attr, alpha=1.0, percentile=100))
    np.testing.assert_array_equal(full[0, 0], np.asarray(viz.to_image(attr, percentile=100))[0, 0])
    np.testing.assert_array_equal(full[1, 1], [51, 51, 51])  # unattributed pixels show the input
    assert viz.overlay(image[..., 0], np.ones((2, 2, 3))).size == (4, 4)  # grayscale input, upsampled map
    with pytest.raises(ValueError, match=r"expected 0 <= alpha <= 1, got 2"):
        viz.overlay(image, attr, alpha=2)
    with pytest.raises(ValueError, match=r"expected an image of shape"):
        viz.overlay(np.zeros((4, 4, 2)), attr)


def test_grid_and_atomic_png(tmp_path):
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3))
    maps = {"a": x - 0.5, "b": np.abs(x)}
    g = viz.grid(x, maps, signed=["a"], row_labels=["cat", "dog"], scale=3)
    assert g.mode == "RGB" and g.height >= 2 * 24 and g.width >= 3 * 24
    path = viz.save_png(g, tmp_path / "sub" / "g.png")
    assert Image.open(path).size == g.size and not list(path.parent.glob(".*tmp"))
    with pytest.raises(ValueError, match=r"expected 'b' maps of shape \(2, 8, 8\[, C\]\)"):
        viz.grid(x, {"b": np.zeros((3, 8, 8))})
    with pytest.raises(ValueError, match=r"expected 2 row labels, got 1"):
        viz.grid(x, maps, row_labels=["cat"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_map_raises(bad):
    m = np.ones((4, 4))
    m[1, 2] = bad
    with pytest.raises(ValueError, match=r"expected a finite attribution map, got 1 NaN/inf value\(s\) of 16"):
        viz.to_image(m)
    with pytest.raises(ValueError, match=r"expected a finite attribution map"):
        viz.overlay(np.zeros((4, 4, 3)), m)
    with pytest.raises(ValueError, match=r"expected a finite map to colour"):
        viz.colorize(m, "inferno")
