"""Shared page helpers: error texts without server paths, heat maps with a colour bar."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dashboard import common


def test_redact_keeps_file_names_and_relative_paths_only(tmp_path):
    text = f"model '/srv/app/m.py:make': no such file '/srv/app/m.py'; see {tmp_path}/sub/x.csv and https://a.b/c"
    out = common.redact(text, root=tmp_path)
    assert out == "model 'm.py:make': no such file 'm.py'; see sub/x.csv and https://a.b/c"
    assert common.redact("~/secret/w.msgpack failed, rel/p.py kept", root=tmp_path) == "w.msgpack failed, rel/p.py kept"


def test_colour_range_is_symmetric_for_signed_maps_and_clipped_at_the_percentile():
    m = np.linspace(-1.0, 3.0, 101).reshape(1, -1)
    lo, hi = common.colour_range(m, signed=True, percentile=100.0)
    assert (lo, hi) == (-3.0, 3.0)
    assert common.colour_range(np.abs(m), signed=False, percentile=50.0) == (0.0, pytest.approx(1.0, abs=0.05))
    assert common.colour_range(np.zeros((4, 4)), signed=False, percentile=99.0) == (0.0, 1.0)  # all zero stays drawable


def test_heatmap_has_a_colour_bar_beside_the_map():
    rng = np.random.default_rng(0)
    png = common.heatmap_png(rng.normal(size=(16, 16)) * 1e-7, cmap="RdBu_r", signed=True, percentile=99.0, label="g")
    img = Image.open(io.BytesIO(png))
    w, h = img.size
    assert img.format == "PNG" and w > h  # the bar widens the figure beside a square map
    rgb = np.asarray(img.convert("RGB"), np.int32)
    right = rgb[:, int(0.8 * w) :]  # the bar's strip: dark red and dark blue ends of RdBu_r
    assert (right[..., 0] - right[..., 2] > 80).any() and (right[..., 2] - right[..., 0] > 80).any()
    with pytest.raises(ValueError, match=r"expected a \(H, W\) map, got shape \(2, 2, 3\)"):
        common.heatmap_png(np.zeros((2, 2, 3)), cmap="inferno", signed=False, percentile=99.0, label="g")


def test_unit_range_maps_the_declared_range_onto_display_range():
    x = np.array([-1.0, 0.0, 1.0], np.float32)
    np.testing.assert_allclose(common.unit_range(x, (-1.0, 1.0)), [0.0, 0.5, 1.0])
    assert common.unit_range(x, None) is x
