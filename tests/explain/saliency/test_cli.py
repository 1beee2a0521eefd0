"""``python -m explain saliency`` writes a labelled grid PNG."""

from __future__ import annotations

import pytest
from PIL import Image
from saliency_testlib import shapes

from explain.__main__ import main


def test_writes_grid_png(tmp_path, capsys):
    shapes()  # skips while the checkpoint is unavailable
    out = tmp_path / "grid.png"
    assert (
        main(["saliency", "--model", "shapes_cnn", "--n", "2", "--methods", "gradient", "grad_cam", "--out", str(out)])
        == 0
    )
    img = Image.open(out)
    assert img.format == "PNG" and img.height > 2 * 64 * 2 and img.width > 3 * 64 * 2
    assert "wrote" in capsys.readouterr().out and not list(tmp_path.glob(".*tmp"))


def test_unknown_method_fails_before_loading():
    with pytest.raises(ValueError, match=r"unknown saliency method 'nope'"):
        main(["saliency", "--methods", "nope"])
