"""``python -m explain export``: an artifact folder that every command takes as ``--model``; bad arguments exit 2."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from explain.__main__ import main
from explain.cli import export as export_cli


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """shapes_cnn exported once through the command (the folder does not exist yet: it is created)."""
    out = tmp_path_factory.mktemp("export") / "shapes_cnn"
    assert main(["export", "--model", "shapes_cnn", "--out", str(out)]) == 0
    return out


def test_export_writes_the_folder_and_says_so(artifact, tmp_path, capsys):
    meta = json.loads((artifact / "model.json").read_text())
    assert meta["name"] == "shapes_cnn" and meta["vjp_order"] == 2 and meta["input"]["shape"] == [64, 64, 3]
    assert sorted(p.name for p in artifact.iterdir()) == ["data.npz", "model.json", "model.stablehlo", "params.npz"]
    # An empty folder is fine, order 1 and no samples: three files.
    (tmp_path / "empty").mkdir()
    argv = ["export", "--model", "friedman1_mlp", "--out", str(tmp_path / "empty"), "--vjp-order", "1"]
    assert main([*argv, "--samples", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'empty'}: model.stablehlo (") and "data.npz" not in out
    meta = json.loads((tmp_path / "empty" / "model.json").read_text())
    assert meta["vjp_order"] == 1 and sorted(meta["files"]) == ["model.stablehlo", "params.npz"]


def test_saliency_takes_the_artifact_as_its_model(artifact, tmp_path, capsys):
    png = tmp_path / "grid.png"
    argv = ["saliency", "--model", str(artifact), "--methods", "vanilla_gradient", "integrated_gradients"]
    assert main([*argv, "--n", "2", "--out", str(png)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {png}")
    with Image.open(png) as img:
        assert img.width > 2 * 64 and img.height > 2 * 64  # the input column and two maps, two rows


@pytest.mark.parametrize("method", ["grad_cam", "guided_backprop", "deconvnet"])
def test_methods_that_need_the_code_refuse_the_artifact_in_one_line(artifact, tmp_path, usage_error, method):
    msg = usage_error(["saliency", "--model", str(artifact), "--methods", method, "--out", str(tmp_path / "g.png")])
    assert msg == (
        "model 'shapes_cnn' is a jax.export artifact: it keeps no layer structure (no layers to tap, no ReLUs to "
        f"rewrite), so {method} cannot run on it; use the model's Python spec"
    )
    assert not (tmp_path / "g.png").exists()


def test_bad_arguments_exit_2_before_loading(artifact, tmp_path, usage_error):
    assert "is not empty (it holds an artifact)" in usage_error(["export", "--model", "nope", "--out", str(artifact)])
    (tmp_path / "notes.txt").write_text("mine")
    msg = usage_error(["export", "--model", "shapes_cnn", "--out", str(tmp_path)])
    assert msg == f"argument --out: {str(tmp_path)!r} is not empty (it holds files); expected a new or empty folder"
    msg = usage_error(["export", "--model", "shapes_cnn", "--out", str(tmp_path / "notes.txt")])
    assert msg.startswith("argument --out: ") and "is a file" in msg
    assert "expected a whole number >= 1, got 0" in usage_error(
        ["export", "--model", "shapes_cnn", "--out", str(tmp_path / "new"), "--vjp-order", "0"]
    )
    assert usage_error(["export", "--model", "no_such_model", "--out", str(tmp_path / "new")]).startswith(
        "unknown model 'no_such_model'"
    )
    assert usage_error(["export", "--model", str(artifact), "--out", str(tmp_path / "new")]) == (
        "model 'shapes_cnn' is already a jax.export artifact; copy its folder instead"
    )
    assert not (tmp_path / "new").exists()


def test_the_help_copies_equal_the_librarys():
    """``--help`` imports no JAX, so the command repeats two of :mod:`explain.exported`'s constants."""
    from explain import exported

    assert export_cli._SAMPLES == exported.SAMPLES and export_cli._METADATA == exported.METADATA
