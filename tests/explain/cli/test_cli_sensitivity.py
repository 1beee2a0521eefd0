"""``python -m explain sensitivity`` prints the ranked table and writes CSV and PNG."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from explain.__main__ import main


def test_sensitivity_command_prints_table_and_writes_csv_and_png(tmp_path, capsys):
    out, png = tmp_path / "r.csv", tmp_path / "bars.png"
    argv = ["sensitivity", "--model", "friedman1_mlp", "--method", "vanilla_gradient", "--top", "10", "--out", str(out)]
    rc = main([*argv, "--plot", str(png), "--permutation-samples", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "[vanilla_gradient]" in text and "95% interval" in text and "Spearman vs permutation importance" in text
    assert "[permutation_importance]" in text and text.count("Global sensitivity of") == 1  # one header for both
    frame = pd.read_csv(out, comment="#")
    top5 = set(frame[frame.method == "vanilla_gradient"].head(5)["feature"])
    assert top5 == {"x0", "x1", "x2", "x3", "x4"}
    assert set(frame.method) == {"vanilla_gradient", "gradient_x_input", "permutation_importance"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_model_is_refused(usage_error):
    msg = usage_error(["sensitivity", "--model", "shapes_cnn"])
    assert (
        msg
        == "sensitivity needs a tabular model (rows of features, (N, F)); model 'shapes_cnn' takes (N, 64, 64, 3) in [0, 1]"
    )


def test_old_method_names_are_gone(usage_error):
    msg = usage_error(["sensitivity", "--model", "friedman1_mlp", "--method", "grad"])
    assert msg.startswith("argument --method: invalid choice: 'grad' (choose from ") and "'vanilla_gradient'" in msg


def test_unknown_model_is_one_line_before_any_work(usage_error):
    msg = usage_error(["sensitivity", "--model", "no_such_model"])
    assert msg.startswith("unknown model 'no_such_model'; shipped names: one of [") and "'friedman1_mlp'" in msg


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--top", "0"], "argument --top: expected a whole number >= 1, got 0"),
        (["--n-bootstrap", "0"], "argument --n-bootstrap: expected a whole number >= 1, got 0"),
        (["--rows", "1"], "argument --rows: expected a whole number >= 2, got 1"),
        (["--permutation-samples", "-1"], "argument --permutation-samples: expected a whole number >= 0, got -1"),
        (["--steps", "0"], "argument --steps: expected a whole number >= 1, got 0"),
        (["--top-k", "two"], "argument --top-k: expected a whole number >= 1, got 'two'"),
        (["--out", "r.txt"], "argument --out: expected a file name ending in .csv or .json, got 'r.txt'"),
        (["--plot", "bars.jpg"], "argument --plot: expected a file name ending in .png, got 'bars.jpg'"),
        (["--label-column", "y"], "--label-column needs --data (the model's own splits carry their labels)"),
    ],
)
def test_bad_options_exit_before_any_work(flags, message, monkeypatch, usage_error):
    from explain import specs

    def refuse(spec):
        raise AssertionError("the model was resolved before the options were checked")

    monkeypatch.setattr(specs, "resolve", refuse)
    assert usage_error(["sensitivity", "--model", "friedman1_mlp", *flags]) == message


def test_ig_uses_the_training_split_means_as_baseline(tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["sensitivity", "--model", "friedman1_mlp", "--method", "integrated_gradients", "--rows", "40"]
    assert main([*argv, "--steps", "4", "--n-bootstrap", "10", "--permutation-samples", "0", "--out", str(out)]) == 0
    assert "integrated_gradients baseline: the training split's feature means" in capsys.readouterr().out
    settings = json.loads(out.read_text())["settings"]
    assert settings["baseline_source"] == "the training split's feature means"
    assert len(settings["baseline"]["mean of references"]) == 10
    assert settings["steps"] == 4 and settings["methods"][0] == "integrated_gradients"


def test_a_users_model_file_with_a_csv(tmp_path, capsys, user_models, usage_error):
    """A factory in a .py file and rows from --data: no shipped model involved."""
    rows = tmp_path / "rows.csv"
    rows.write_text("c,a,b\n" + "\n".join(f"{i % 3},{i},{2 * i % 5}" for i in range(12)) + "\n")
    out = tmp_path / "r.csv"
    argv = ["sensitivity", "--model", f"{user_models}:tabular", "--data", str(rows), "--top-k", "2"]
    argv += ["--method", "gradient_x_input"]
    assert main([*argv, "--n-bootstrap", "5", "--permutation-samples", "0", "--top", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[gradient_x_input]" in text and "'user_tabular'" in text
    frame = pd.read_csv(out, comment="#")
    # The model is 3·a + 1·b + 0·c (its first output), and features are matched by name, not by column order.
    assert list(frame[frame.method == "vanilla_gradient"]["feature"]) == ["a", "b", "c"]
    msg = usage_error([*argv[:-1], "integrated_gradients"])
    assert msg.startswith("--baseline mean takes the feature means of the training split")
    assert main([*argv[:-1], "integrated_gradients", "--baseline", "zero", "--n-bootstrap", "5"]) == 0
    assert "integrated_gradients baseline: zero" in capsys.readouterr().out


def test_a_named_loss_kind_is_selectable_as_the_target(tmp_path, capsys, usage_error):
    out = tmp_path / "r.csv"
    argv = ["sensitivity", "--model", "breast_cancer_mlp", "--method", "vanilla_gradient", "--target", "loss:cw"]
    assert main([*argv, "--rows", "64", "--n-bootstrap", "20", "--permutation-samples", "2", "--out", str(out)]) == 0
    assert "loss[cw]" in capsys.readouterr().out
    msg = usage_error(["sensitivity", "--model", "breast_cancer_mlp", "--target", "loss:hinge"])
    assert msg.startswith("argument --target: invalid choice: 'loss:hinge'")
