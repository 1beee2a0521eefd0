"""``--data PATH``: every command that reads inputs takes them from the user's files (via ``explain.data.load``)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from explain.__main__ import main


@pytest.fixture
def image_folder(tmp_path):
    """Five 6x6 grey images in ImageFolder layout (classes of the user's CNN: left, right) and one corrupt file."""
    root = tmp_path / "images"
    rng = np.random.default_rng(1)
    for i, cls in enumerate(["left", "left", "right", "right", "right"]):
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8), mode="L").save(root / cls / f"img{i}.png")
    (root / "right" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_saliency_on_an_image_folder(tmp_path, capsys, user_models, image_folder):
    out = tmp_path / "g.png"
    argv = ["saliency", "--model", f"{user_models}:image_bundle", "--data", str(image_folder), "--n", "3"]
    assert main([*argv, "--methods", "vanilla_gradient", "--scale", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "rows are true (predicted) class" in captured.out
    assert (
        f"--data {image_folder}: skipped 1 file(s) that could not be used:" in captured.err
        and "right/broken.png: " in captured.err
    )
    img = Image.open(out)
    assert img.format == "PNG" and 3 * 6 <= img.height < 4 * 6 + 40  # 3 rows of 6-pixel cells (and a header)


def test_saliency_on_an_unlabelled_npy_explains_what_there_is(tmp_path, capsys, user_models):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).uniform(size=(2, 6, 6, 1)).astype(np.float32))
    out = tmp_path / "g.png"
    argv = ["saliency", "--model", f"{user_models}:image_bundle", "--data", str(data), "--n", "4", "--scale", "1"]
    assert main([*argv, "--methods", "gradient_x_input", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"explaining all 2 inputs of --data {data} (--n 4)" in captured.err
    assert "rows are input (predicted class)" in captured.out and out.read_bytes()[:4] == b"\x89PNG"


def test_saliency_reference_methods_need_inputs_left_over(tmp_path, user_models, usage_error):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((2, 6, 6, 1), np.float32))
    argv = ["saliency", "--model", f"{user_models}:image_bundle", "--data", str(data), "--n", "2"]
    msg = usage_error([*argv, "--methods", "expected_gradients", "--out", str(tmp_path / "g.png")])
    assert msg.startswith("['expected_gradients'] take their reference set from the inputs after the first --n 2")


def test_robustness_on_a_labelled_image_folder(tmp_path, capsys, user_models, image_folder):
    argv = ["robustness", "--model", f"{user_models}:image_bundle", "--attack", "fgsm", "--eps", "0,1/10"]
    out = tmp_path / "out"
    assert main([*argv, "--data", str(image_folder), "--out", str(out)]) == 0
    assert f"5 images of --data {image_folder}" in capsys.readouterr().out
    lines = (out / "robustness.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 and lines[1].split(",")[0] == "user_cnn"
    settings = json.loads((out / "robustness.json").read_text())["settings"]
    assert settings["data"] == str(image_folder)


def test_sensitivity_with_a_labelled_csv_and_a_loss_target(tmp_path, capsys, user_models):
    rows = tmp_path / "rows.csv"
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(16, 3)), columns=["b", "c", "a"])  # any column order
    frame["note"] = "ignored"
    frame["label"] = (frame.a > 0).astype(int)
    frame.to_csv(rows, index=False)
    out = tmp_path / "r.csv"
    argv = ["sensitivity", "--model", f"{user_models}:tabular", "--data", str(rows), "--label-column", "label"]
    argv += ["--target", "loss", "--n-bootstrap", "5", "--permutation-samples", "0", "--rows", "12"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "[vanilla_gradient]" in capsys.readouterr().out
    table = pd.read_csv(out, comment="#")
    grads = table[table.method == "vanilla_gradient"]
    assert list(grads.feature) == ["a", "b", "c"]  # |d loss / d x| follows the weights 3, 1, 0


def test_gradflow_on_unlabelled_data(tmp_path, capsys, user_models):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(4).uniform(size=(5, 6, 6, 1)).astype(np.float32))
    out = tmp_path / "out"
    argv = ["gradflow", "--model", f"{user_models}:image_bundle", "--data", str(data), "--n", "3", "--out", str(out)]
    assert main(argv) == 0
    assert f"over 3 inputs (--data {data})" in capsys.readouterr().out
    with (out / "user_cnn_gradflow.csv").open(newline="") as fh:
        assert [r["layer"] for r in csv.DictReader(fh)] == ["conv", "hidden", "head"]
