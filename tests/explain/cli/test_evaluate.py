"""``python -m explain evaluate``: the table, the files, the same numbers as the library, masks from the split."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from explain import specs
from explain.__main__ import main
from explain.metrics import report


def test_evaluate_prints_the_table_and_writes_what_the_library_computes(tmp_path, capsys):
    out = tmp_path / "new" / "folder"
    argv = ["evaluate", "--model", "digits_cnn", "--n", "3", "--methods", "vanilla_gradient", "gradient_x_input"]
    assert main([*argv, "--metrics", "deletion_auc", "sparseness", "mask_auc", "--seed", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "digits_cnn: 3 inputs from the test split of digits_cnn, seed 5" in text
    assert "deletion_auc (↓)" in text and "sparseness (↑)" in text and "cost × fwd (↓)" in text
    assert "left out mask_auc: needs object masks (N, H, W); none were given" in text
    doc = json.loads((out / "evaluate.json").read_text())
    assert doc["model"] == "digits_cnn" and doc["seed"] == 5 and doc["n"] == 3
    assert [m["name"] for m in doc["metrics"]] == ["deletion_auc", "sparseness"]
    # The dashboard calls the library with the same sample and seed: it must show these numbers.
    bundle = specs.resolve("digits_cnn")
    lib = report.evaluate(
        bundle.model, bundle.dataset.test.x[:3], methods=["vanilla_gradient", "gradient_x_input"],
        metrics=["deletion_auc", "sparseness"], key=jax.random.key(5),
    )  # fmt: skip
    for i, m in enumerate(lib.methods):
        assert [doc["values"][m][k] for k in lib.metrics] == pytest.approx(lib.values[i], rel=1e-6)
    header = (out / "evaluate.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "method,deletion_auc (↓),sparseness (↑),seconds,cost"
    assert (out / "evaluate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shapes_takes_its_masks_from_the_test_split(tmp_path, capsys):
    argv = ["evaluate", "--model", "shapes_cnn", "--n", "2", "--methods", "grad_cam", "--metrics", "pointing_game"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "pointing_game (↑)" in capsys.readouterr().out
    doc = json.loads((tmp_path / "evaluate.json").read_text())
    assert doc["skipped"] == {} and set(doc["per_sample"]["grad_cam"]["pointing_game"]) <= {0.0, 1.0}
    masks = specs.resolve("shapes_cnn").dataset.test.mask[:2]
    lib = report.evaluate(
        "shapes_cnn", specs.resolve("shapes_cnn").dataset.test.x[:2], masks=masks, methods=["grad_cam"],
        metrics=["pointing_game"], key=jax.random.key(0),
    )  # fmt: skip
    np.testing.assert_array_equal(
        doc["per_sample"]["grad_cam"]["pointing_game"], lib.per_sample[("grad_cam", "pointing_game")]
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "nope"], "argument --metrics: invalid choice: 'nope'"),
        (["--methods", "nope"], "argument --methods: invalid choice: 'nope'"),
        (["--label-column", "y"], "--label-column needs --data (the model's own splits carry their labels)"),
        (["--n", "0"], "argument --n: expected a whole number >= 1, got 0"),
    ],
)
def test_bad_arguments_are_one_line_errors(extra, message, tmp_path, usage_error):
    msg = usage_error(["evaluate", "--model", "digits_cnn", "--out", str(tmp_path / "o"), *extra])
    assert msg.startswith(message)
    assert not (tmp_path / "o").exists()


def test_a_method_the_model_cannot_run_is_a_usage_error(tmp_path, user_models, usage_error):
    msg = usage_error(
        ["evaluate", "--model", f"{user_models}:tabular", "--methods", "grad_cam", "--out", str(tmp_path / "o")]
    )
    assert msg.startswith("grad_cam needs image inputs")
