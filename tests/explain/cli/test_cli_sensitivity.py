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
    assert "[permutation]" in text and text.count("Global sensitivity of") == 1  # one header for both tables
    frame = pd.read_csv(out, comment="#")
    top5 = set(frame[frame.method == "grad"].head(5)["feature"])
    assert top5 == {"x0", "x1", "x2", "x3", "x4"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_model_is_refused():
    with pytest.raises(SystemExit, match="tabular model"):
        main(["sensitivity", "--model", "shapes_cnn"])


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--top", "0"], "--top must be >= 1"),
        (["--bootstraps", "0"], "--bootstraps must be >= 1"),
        (["--rows", "1"], "--rows must be >= 2"),
        (["--repeats", "-1"], "--repeats must be >= 0"),
        (["--ig-steps", "0"], "--ig-steps must be >= 1"),
        (["--top-k", "0"], "--top-k must be >= 1"),
        (["--out", "r.txt"], r"--out must end in .csv or .json"),
        (["--plot", "bars.jpg"], r"--plot must end in .png"),
    ],
)
def test_bad_options_exit_before_any_work(flags, match, monkeypatch):
    from models import registry

    def refuse(name):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(registry, "load", refuse)
    with pytest.raises(SystemExit, match=match):
        main(["sensitivity", "--model", "friedman1_mlp", *flags])


def test_ig_uses_the_training_split_means_as_baseline(tmp_path, capsys):
    import json

    out = tmp_path / "r.json"
    argv = ["sensitivity", "--model", "friedman1_mlp", "--method", "ig", "--rows", "40", "--ig-steps", "4"]
    assert main([*argv, "--bootstraps", "10", "--repeats", "0", "--out", str(out)]) == 0
    assert "IG baseline: the training split's feature means" in capsys.readouterr().out
    settings = json.loads(out.read_text())["settings"]
    assert settings["ig_baseline_source"] == "the training split's feature means"
    assert len(settings["ig_baseline"]["mean of reference"]) == 10
