"""``python -m explain robustness``: argument parsing and a small end-to-end run."""

from __future__ import annotations

import argparse

import pytest

from explain.cli import robustness as cli


def test_parse_eps_and_attacks():
    assert cli.parse_eps("0, 1/255,0.5") == [0.0, 1 / 255, 0.5]
    with pytest.raises(argparse.ArgumentTypeError, match="expected eps >= 0"):
        cli.parse_eps("0,-1/255")
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated list of numbers"):
        cli.parse_eps("a/b")
    assert cli.parse_attacks("fgsm,pgd") == ["fgsm", "pgd"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown attack\(s\) \['cw'\]"):
        cli.parse_attacks("fgsm,cw")


def test_command_writes_table_and_plot(tmp_path, capsys):
    from explain.__main__ import main

    rc = main(
        [
            "robustness",
            "--model",
            "shapes_cnn",
            "--attack",
            "fgsm,pgd",
            "--eps",
            "0,8/255",
            "--n",
            "24",
            "--steps",
            "3",
            "--memory-budget",
            "64M",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0
    assert (tmp_path / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    lines = (tmp_path / "robustness.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 2 and all(",predictions," in line for line in lines[1:])
    assert "sanity checks:" in out.out and "attack labels: predictions" in out.out


def test_bad_arguments_are_refused_before_loading(capsys, monkeypatch):
    from explain import specs
    from explain.__main__ import main

    with pytest.raises(SystemExit) as info:  # argparse: usage and status 2
        main(["robustness", "--model", "shapes_cnn", "--memory-budget", "0"])
    assert info.value.code == 2
    assert "--memory-budget: expected a positive number of bytes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # the flag names the library's label_source choices
        main(["robustness", "--model", "shapes_cnn", "--label-source", "ground-truth"])
    assert info.value.code == 2 and "invalid choice: 'ground-truth'" in capsys.readouterr().err
    monkeypatch.setattr(specs, "resolve", lambda spec: pytest.fail("resolved the model before checking --steps"))
    with pytest.raises(SystemExit) as info:
        main(["robustness", "--model", "shapes_cnn", "--steps", "0"])
    assert info.value.code == 2 and "argument --steps: expected a whole number >= 1, got 0" in capsys.readouterr().err
    monkeypatch.undo()
    with pytest.raises(SystemExit) as info:
        main(["robustness", "--model", "resnet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.splitlines()[-1].startswith(
        "python -m explain robustness: error: unknown model"
    )
    assert "'shapes_cnn'" in err and sum("error:" in line for line in err.splitlines()) == 1  # one line


def test_a_regression_model_is_refused(capsys):
    from explain.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["robustness", "--model", "friedman1_mlp"])
    assert info.value.code == 2 and "friedman1_mlp is a regression model" in capsys.readouterr().err


def test_new_attack_names_and_the_suite_options(tmp_path, capsys, monkeypatch):
    import json

    from explain.__main__ import main
    from explain.adversarial import AttackConfig, evaluation
    from explain.adversarial import suite as suite_lib

    short = {  # the rapid suite's attacks with 5 steps: the command line's plumbing, not the attacks, is tested here
        "apgd-ce": AttackConfig("apgd", steps=5),
        "apgd-t": AttackConfig("apgd", steps=5, loss="dlr_targeted", target_classes=3),
    }
    for module in (evaluation, suite_lib):
        monkeypatch.setattr(module, "suite_attacks", lambda suite, norm: short)

    assert cli.parse_attacks("apgd-ce,apgd-dlr,apgd-t,square") == ["apgd-ce", "apgd-dlr", "apgd-t", "square"]
    cfg = cli.attack_configs(["pgd", "apgd-t", "square"], norm="linf", steps=5, restarts=1, loss="cw", queries=50)
    assert (cfg["pgd"].loss, cfg["apgd-t"].loss, cfg["square"].steps) == ("cw", "dlr_targeted", 50)
    with pytest.raises(SystemExit):
        main(["robustness", "--model", "shapes_cnn", "--suite", "auto"])
    assert "invalid choice: 'auto'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["robustness", "--model", "shapes_cnn", "--suite", "rapid", "--attack", "pgd"])
    assert info.value.code == 2 and "argument --attack: not allowed with argument --suite" in capsys.readouterr().err
    args = ["robustness", "--model", "shapes_cnn", "--suite", "rapid", "--eps", "8/255", "--n", "8", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "suite rapid at ε = 0.031373" in out and "after apgd-t" in out
    doc = json.loads((tmp_path / "robustness.json").read_text())
    assert doc["settings"]["seed"] == 3 and doc["settings"]["suite"] == "rapid" and doc["suite"] == "rapid"
    assert set(doc["attacks"]) == {"apgd-ce", "apgd-t"} and doc["attacks"]["apgd-t"]["loss"] == "dlr_targeted"
    assert {"jax", "flax", "numpy", "python"} <= set(doc["versions"])
    import explain.io
    import models

    assert doc["model_sha256"] == explain.io.params_sha256(models.load("shapes_cnn").model.params)
    assert len(doc["suite_results"][0]["broken_by"]) == 8
    assert doc["suite_results"][0]["robust_accuracy"] == doc["rows"][-1]["accuracy"]
