"""``python -m explain sensitivity`` prints the ranked table and writes CSV and PNG."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("models")

from explain.__main__ import main  # noqa: E402


def test_sensitivity_command_prints_table_and_writes_csv_and_png(tmp_path, capsys):
    out, png = tmp_path / "r.csv", tmp_path / "bars.png"
    argv = ["sensitivity", "--model", "friedman1_mlp", "--method", "grad", "--top", "10", "--out", str(out)]
    rc = main([*argv, "--plot", str(png), "--repeats", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "[grad]" in text and "95% interval" in text and "Spearman vs permutation importance" in text
    frame = pd.read_csv(out, comment="#")
    top5 = set(frame[frame.method == "grad"].head(5)["feature"])
    assert top5 == {"x0", "x1", "x2", "x3", "x4"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_model_is_refused():
    with pytest.raises(SystemExit, match="tabular model"):
        main(["sensitivity", "--model", "shapes_cnn"])
