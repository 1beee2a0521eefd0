"""A user's own package, outside the repository, explained end to end through its specs.

``tests/user_package/usermodels`` is copied to a temporary folder (never under the repository),
trained a few steps there (``python -m usermodels.train``), and then used as a user would: an NNX
CNN written like Flax's MNIST example (BatchNorm, Dropout, ``__call__(self, x, rngs)``) and a linen
MLP with a ``train`` flag, named by ``usermodels.nets:cnn`` and ``usermodels.nets:mlp``. Everything a
shipped model can do, these do: the commands and the batch API here, the dashboard in
``tests/dashboard/test_your_model_pages.py`` and ``tests/test_browser.py`` (all through
:func:`usermodel_testlib.trained_package`).

Ground truth makes the checks real: the CNN's class is the quadrant of a bright square, the MLP's
class depends on ``age + 2 * dose`` only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from usermodel_testlib import CNN, MLP, env_for, trained_package

import explain
from explain.__main__ import main


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    return trained_package(tmp_path_factory)


@pytest.fixture
def on_path(user, monkeypatch):
    monkeypatch.syspath_prepend(str(user))
    return user


def test_training_mode_is_refused_before_tracing_with_how_to_switch(on_path):
    with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
        explain.specs.resolve("usermodels.nets:cnn_in_training_mode")


def test_the_command_runs_the_users_cnn_from_its_own_folder(user, tmp_path):
    out = tmp_path / "grid.png"
    env = env_for(user)
    cmd = [sys.executable, "-m", "explain", "saliency", "--model", CNN, "--n", "2", "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--methods", "vanilla_gradient", "integrated_gradients", "grad_cam", "guided_backprop"],
        cwd=user, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size[0] > 16


def test_saliency_reads_a_folder_of_the_users_images(on_path, tmp_path):
    from usermodels import data

    split = data.images(6, seed=7)
    for i, (img, label) in enumerate(zip(split.x, split.y)):
        folder = tmp_path / "images" / data.CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "saliency",
                "--model",
                CNN,
                "--data",
                str(tmp_path / "images"),
                "--methods",
                "vanilla_gradient",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size[1] > Image.open(out).size[0] / 4  # one row per image


def test_robustness_of_the_users_cnn_falls_with_eps_and_starts_at_its_accuracy(on_path, tmp_path):
    argv = ["robustness", "--model", CNN, "--attack", "fgsm,pgd", "--eps", "0,4/255,64/255", "--steps", "5"]
    assert main([*argv, "--n", "32", "--label-source", "labels", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "robustness.json").read_text())
    assert report["clean_accuracy"] >= 0.9
    pgd = sorted((r["eps"], r["accuracy"]) for r in report["rows"] if r["attack"] == "pgd")
    assert pgd[0][1] == pytest.approx(report["clean_accuracy"]) and pgd[-1][1] < pgd[0][1]


@pytest.mark.parametrize("spec", [CNN, MLP])
def test_gradient_flow_of_the_users_models(on_path, tmp_path, spec):
    assert main(["gradflow", "--model", spec, "--n", "8", "--out", str(tmp_path)]) == 0
    (table,) = tmp_path.glob("*_gradflow.csv")
    assert len(table.read_text().splitlines()) > 3


def test_sensitivity_of_the_users_mlp_finds_the_two_features_that_matter(on_path, tmp_path):
    out = tmp_path / "ranking.json"
    assert main(["sensitivity", "--model", MLP, "--rows", "128", "--n-bootstrap", "20", "--out", str(out)]) == 0
    rows = [r for r in json.loads(out.read_text())["rows"] if r["method"] == "vanilla_gradient"]
    top = [r["feature"] for r in sorted(rows, key=lambda r: r["rank"])[:2]]
    assert top == ["dose", "age"]  # the class depends on age + 2 * dose, nothing else


def test_sensitivity_reads_the_users_csv_with_shuffled_columns(on_path, tmp_path):
    from usermodels import data

    split = data.rows(64, seed=9)
    columns = {name: split.x[:, i] for i, name in enumerate(data.FEATURES)}
    lines = ["level," + ",".join(reversed(data.FEATURES))]
    lines += [
        ",".join([data.LEVELS[y], *(f"{columns[f][i]:.6f}" for f in reversed(data.FEATURES))])
        for i, y in enumerate(split.y)
    ]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "ranking.csv"
    argv = ["sensitivity", "--model", MLP, "--data", str(tmp_path / "rows.csv"), "--label-column", "level"]
    assert main([*argv, "--target", "loss", "--n-bootstrap", "10", "--out", str(out)]) == 0
    assert "dose" in out.read_text()


def test_robustness_of_the_users_mlp(on_path, tmp_path):
    argv = ["robustness", "--model", MLP, "--attack", "fgsm", "--eps", "0,0.2", "--n", "64", "--out", str(tmp_path)]
    assert main([*argv, "--label-source", "labels"]) == 0
    report = json.loads((tmp_path / "robustness.json").read_text())
    assert report["clean_accuracy"] >= 0.7


@pytest.mark.parametrize("spec", [CNN, MLP])
def test_the_batch_api_takes_the_spec_and_keeps_completeness(on_path, tmp_path, spec):
    bundle = explain.specs.resolve(spec)
    x = bundle.dataset.test.x[:12]
    run = explain.attribute_dataset(
        spec, x, method="integrated_gradients", out_dir=tmp_path, batch_size=8, target="pred", options={"steps": 64}
    )
    maps = run.load()
    assert maps.shape == x.shape
    outputs = np.asarray(explain.gradients.forward(bundle.model, x))
    baseline = np.asarray(explain.gradients.forward(bundle.model, np.zeros_like(x)))
    pred = outputs.argmax(1)
    gap = outputs[np.arange(12), pred] - baseline[np.arange(12), pred]
    sums = maps.reshape(12, -1).sum(1)
    np.testing.assert_allclose(sums, gap, rtol=0.05, atol=0.05 * np.abs(gap).max())
    assert json.loads((tmp_path / "manifest.json").read_text())["spec"] == spec
