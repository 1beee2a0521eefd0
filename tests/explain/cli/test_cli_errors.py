"""Bad arguments are refused the argparse way by every command: exit status 2, one ``error:`` line, no traceback.

Every case in the table is refused before the model is resolved (``explain.specs.resolve`` is made to fail),
so a bad ``--out`` or ``--n`` never costs a model load; the cases after it can only be found once the model
or the data is loaded, and are reported the same way.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

FOLDER = "<existing folder>"
FILE = "<existing file>"

BEFORE_LOADING = [
    # saliency
    (["saliency", "--n", "0"], "argument --n: expected a whole number >= 1, got 0"),
    (["saliency", "--n", "-3"], "argument --n: expected a whole number >= 1, got -3"),
    (["saliency", "--n", "many"], "argument --n: expected a whole number >= 1, got 'many'"),
    (["saliency", "--scale", "0"], "argument --scale: expected a whole number >= 1, got 0"),
    (["saliency", "--overlay", "1.5"], "argument --overlay: expected a number in [0, 1], got 1.5"),
    (["saliency", "--methods", "nope"], "argument --methods: invalid choice: 'nope' (choose from 'vanilla_gradient',"),
    (["saliency", "--out", "grid.jpg"], "argument --out: expected a file name ending in .png, got 'grid.jpg'"),
    (
        ["saliency", "--out", "missing/g.png"],
        "argument --out: 'missing' (the folder of 'missing/g.png') does not exist;",
    ),
    (["saliency", "--out", FOLDER], "is a folder; expected a file name ending in .png"),
    (["saliency", "--data", "missing.npy"], "argument --data: no such file or folder 'missing.npy'"),
    (["saliency", "--label-column", "y"], "--label-column needs --data (the model's own splits carry their labels)"),
    (["saliency", "--memory-budget", "0"], "argument --memory-budget: expected a positive number of bytes"),
    # sensitivity
    (["sensitivity", "--out", "missing/r.csv"], "argument --out: 'missing' (the folder of 'missing/r.csv') does not"),
    (["sensitivity", "--plot", "missing/b.png"], "argument --plot: 'missing' (the folder of 'missing/b.png') does not"),
    (["sensitivity", "--method", "grad"], "argument --method: invalid choice: 'grad' (choose from 'vanilla_gradient',"),
    (["sensitivity", "--data", "missing.csv"], "argument --data: no such file or folder 'missing.csv'"),
    # robustness
    (["robustness", "--eps", "0,-1/255"], "argument --eps: expected eps >= 0"),
    (["robustness", "--eps", "a/b"], "argument --eps: expected a comma-separated list of numbers or fractions"),
    (["robustness", "--attack", "fgsm,cw"], "argument --attack: unknown attack(s) ['cw']; expected a comma-separated"),
    (["robustness", "--suite", "auto"], "argument --suite: invalid choice: 'auto' (choose from 'rapid', 'standard')"),
    (["robustness", "--attack", "pgd", "--suite", "rapid"], "argument --suite: not allowed with argument --attack"),
    (["robustness", "--steps", "0"], "argument --steps: expected a whole number >= 1, got 0"),
    (["robustness", "--n", "0"], "argument --n: expected a whole number >= 1, got 0"),
    (["robustness", "--queries", "-5"], "argument --queries: expected a whole number >= 1, got -5"),
    (["robustness", "--out", FILE], "is a file; expected a folder (created when missing)"),
    (["robustness", "--out", f"{FILE}/sub"], "is a file, not a folder"),
    (["robustness", "--label-source", "truth"], "argument --label-source: invalid choice: 'truth'"),
    # gradflow
    (["gradflow", "--out", "o"], "one of the arguments --experiment --model is required"),
    (["gradflow", "--experiment", "depth", "--n", "0", "--out", "o"], "argument --n: expected a whole number >= 1"),
    (["gradflow", "--experiment", "depth", "--activations", "gelu", "--out", "o"], "unknown: gelu"),
    (
        ["gradflow", "--experiment", "depth", "--learning-rate", "0", "--out", "o"],
        "expected a finite number > 0, got '0'",
    ),
    (["gradflow", "--experiment", "depth", "--out", FILE], "is a file; expected a folder"),
    (["gradflow", "--experiment", "depth", "--data", FILE, "--out", "o"], "--data is for --model; the depth"),
]


@pytest.mark.parametrize(("argv", "message"), BEFORE_LOADING, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_arguments_are_refused_before_loading(argv, message, tmp_path, monkeypatch, usage_error):
    from explain import specs

    monkeypatch.chdir(tmp_path)  # relative --out paths land here; "missing/" is missing
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    argv = [a.replace(FOLDER, "folder").replace(FILE, "file.txt") for a in argv]
    needs_model = argv[0] in ("sensitivity", "robustness") and "--model" not in argv
    argv = [*argv, "--model", "friedman1_mlp"] if needs_model else argv
    monkeypatch.setattr(specs, "resolve", lambda spec: pytest.fail(f"resolved {spec!r} before checking the arguments"))
    assert message in usage_error(argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]  # nothing written


def test_unknown_model_of_every_command(usage_error, tmp_path):
    for command, out in (("saliency", "g.png"), ("sensitivity", "r.csv"), ("robustness", "o"), ("gradflow", "o")):
        msg = usage_error([command, "--model", "resnet", "--out", str(tmp_path / out)])
        assert msg.startswith("unknown model 'resnet'; shipped names: one of [") and "'shapes_cnn'" in msg


def test_a_spec_error_in_a_fresh_process_has_no_traceback(tmp_path):
    """The real ``python -m explain``: gradflow printed a traceback for an unknown model before."""
    cmd = [sys.executable, "-m", "explain", "gradflow", "--model", "resnet", "--out", str(tmp_path / "o")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.startswith("usage: python -m explain gradflow")
    assert done.stderr.splitlines()[-1].startswith("python -m explain gradflow: error: unknown model 'resnet'")


def test_model_kind_mismatches_after_loading(user_models, usage_error, tmp_path):
    msg = usage_error(["saliency", "--model", f"{user_models}:tabular", "--out", str(tmp_path / "g.png")])
    assert msg.startswith("saliency needs an image model (inputs (N, H, W, C)); model ") and "takes (N, 3)" in msg
    msg = usage_error(["sensitivity", "--model", f"{user_models}:image_bundle"])
    assert msg.startswith("sensitivity needs a tabular model (rows of features, (N, F)); model ")
    assert msg.endswith("takes (N, 6, 6, 1) in [0, 1]")
    msg = usage_error(["robustness", "--model", "friedman1_mlp", "--out", str(tmp_path / "o")])
    assert msg == "friedman1_mlp is a regression model; robustness here needs a classifier"
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "o").exists()


def test_data_errors_after_loading(user_models, usage_error, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 5, 5, 1), np.float32))
    msg = usage_error(["saliency", "--model", f"{user_models}:image_bundle", "--data", str(wrong)])
    assert msg.startswith(f"data '{wrong}'") and "(N, 6, 6, 1)" in msg and "(3, 5, 5, 1)" in msg
    unlabelled = tmp_path / "x.npy"
    np.save(unlabelled, np.zeros((3, 6, 6, 1), np.float32))
    argv = ["robustness", "--model", f"{user_models}:image_bundle", "--data", str(unlabelled), "--out", str(tmp_path)]
    msg = usage_error(argv)
    assert msg.startswith(f"robustness (accuracy against true labels) needs labels and --data '{unlabelled}' has none")
    assert "one subfolder per class" in msg and "--label-column" in msg
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    msg = usage_error(["sensitivity", "--model", f"{user_models}:tabular", "--data", str(rows), "--target", "loss"])
    assert msg.startswith(f"--target loss needs labels and --data '{rows}' has none")
    msg = usage_error(["sensitivity", "--model", f"{user_models}:tabular", "--data", str(rows), "--label-column", "y"])
    assert msg.startswith(f"data '{rows}'") and "'y'" in msg


def test_sensitivity_top_k_beyond_the_features(user_models, usage_error):
    msg = usage_error(["sensitivity", "--model", f"{user_models}:tabular", "--top-k", "4"])
    assert msg == f"--top-k 4 exceeds the 3 features of model '{user_models}:tabular'"
