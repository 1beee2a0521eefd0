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
    pytest.importorskip("models")
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


def test_bad_arguments_are_refused_before_loading(capsys):
    from explain.__main__ import main

    assert main(["robustness", "--model", "shapes_cnn", "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    assert main(["robustness", "--model", "resnet"]) == 2
    assert "unknown model 'resnet'" in capsys.readouterr().err
