"""Every command takes ``--model`` as a spec (``explain.specs``): a user's ``file.py:factory`` end to end."""

from __future__ import annotations

import argparse
import csv

import pytest
from PIL import Image

from explain.__main__ import main


def test_saliency_grid_of_a_users_model(tmp_path, capsys, user_models):
    out = tmp_path / "g.png"
    argv = ["saliency", "--model", f"{user_models}:image_bundle", "--n", "2", "--scale", "1"]
    assert main([*argv, "--methods", "vanilla_gradient", "gradient_x_input", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.height > 2 * 6 and img.width > 3 * 6  # 2 rows; input + 2 maps
    assert "wrote" in capsys.readouterr().out and not list(tmp_path.glob(".*part"))


def test_saliency_refuses_a_tabular_model(user_models, usage_error):
    msg = usage_error(["saliency", "--model", f"{user_models}:tabular", "--methods", "vanilla_gradient"])
    assert msg == f"saliency needs an image model (inputs (N, H, W, C)); model '{user_models}:tabular' takes (N, 3)"


def test_gradflow_of_a_users_model_writes_its_csv_atomically(tmp_path, capsys, user_models, monkeypatch):
    out = tmp_path / "out"
    argv = ["gradflow", "--model", f"{user_models}:image_bundle", "--n", "4", "--out", str(out)]
    assert main([*argv, "--memory-budget", "64K"]) == 0
    text = capsys.readouterr().out
    path = out / "user_cnn_gradflow.csv"  # the bundle's name "user cnn", made safe for a file name
    assert f"wrote {path}" in text and "Jacobian chain" in text and "user cnn: gradient of" in text
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["layer"] for r in rows] == ["conv", "hidden", "head"]
    assert all(float(r["act_grad_mean"]) > 0 for r in rows)

    import explain.io

    def fail(src, dst):
        raise OSError("disk full")

    before = path.read_bytes()
    monkeypatch.setattr(explain.io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        main(argv)
    assert path.read_bytes() == before and sorted(p.name for p in out.iterdir()) == [path.name]


def test_gradflow_needs_exactly_one_mode_and_a_dataset(tmp_path, user_models, usage_error):
    msg = usage_error(["gradflow", "--out", str(tmp_path)])
    assert msg == "one of the arguments --experiment --model is required"
    msg = usage_error(["gradflow", "--experiment", "depth", "--model", "shapes_cnn", "--out", str(tmp_path)])
    assert msg == "argument --model: not allowed with argument --experiment"
    msg = usage_error(["gradflow", "--model", f"{user_models}:tabular", "--out", str(tmp_path / "out")])
    assert (
        msg
        == "gradflow needs the model's layers: model 'user_tabular' exposes no layers; wrap it with explain.from_linen or from_nnx"
    )
    bare = tmp_path / "bare.py"  # the image model alone: layers, but no dataset
    bare.write_text(user_models.read_text() + "\n\ndef bare():\n    return image_bundle().model\n")
    msg = usage_error(["gradflow", "--model", f"{bare}:bare", "--out", str(tmp_path / "out")])
    assert "comes with no dataset; the gradflow command reads its inputs from dataset.test.x" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["saliency", "sensitivity", "robustness", "gradflow", "evaluate", "export"])
def test_every_command_reports_a_bad_spec_in_one_line(command, tmp_path, usage_error):
    out = {"saliency": "o.png", "sensitivity": "o.csv"}.get(command, "o")
    msg = usage_error([command, "--model", f"{tmp_path}/missing.py:make", "--out", str(tmp_path / out)])
    assert msg == f"model '{tmp_path}/missing.py:make': no such file '{tmp_path}/missing.py'"


def test_memory_budget_units():
    from explain.cli._args import parse_bytes

    assert parse_bytes("1048576") == 2**20 and parse_bytes("64K") == 64 * 2**10
    assert parse_bytes("256M") == parse_bytes("256MiB") == parse_bytes("256mb") == 256 * 2**20
    assert parse_bytes("2G") == 2 * 2**30
    for bad in ("0", "-1", "1.5G", "lots", "12T"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive number of bytes"):
            parse_bytes(bad)


def test_robustness_of_a_users_model_against_its_labels(tmp_path, capsys, user_models):
    argv = ["robustness", "--model", f"{user_models}:image_bundle", "--attack", "fgsm,bim", "--eps", "0,1/10"]
    assert main([*argv, "--n", "6", "--steps", "2", "--label-source", "labels", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "robustness.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 2 and all(",labels," in line for line in lines[1:])
    assert "attack labels: labels" in capsys.readouterr().out
    assert (tmp_path / "robustness.png").read_bytes()[:4] == b"\x89PNG"
