"""``--help``: the shipped model names and every default, answered without importing JAX."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from explain import specs
from explain.__main__ import COMMANDS, build_parser, main
from explain.cli import _args, _choices


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_the_shipped_names_and_the_defaults(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    names = specs.shipped_names()
    assert names and all(name in text for name in names)
    assert text.count("(default: ") >= 2 and "examples: python -m explain" in text
    assert "--memory-budget" not in text or "(default: 256M)" in text


def test_every_option_with_a_default_says_it():
    """Options defaulting to a value get ``(default: X)``; the rest (``None``) say in words what happens."""
    _, subparsers = build_parser()
    formatter = _args.HelpFormatter("python -m explain")
    for name in sorted(COMMANDS):
        parser = subparsers[name]
        one_of = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.required or action in one_of or action.const is True:
                continue
            shown = formatter._get_help_string(action) or ""
            assert "(default: " in shown, f"{name} {action.option_strings}: {shown!r}"


def test_choices_for_help_equal_the_librarys():
    """:mod:`explain.cli._choices` copies names so that ``--help`` need not import JAX; here they cannot drift."""
    from explain.adversarial.evaluation import LABEL_CHOICES
    from explain.adversarial.suite import SUITES
    from explain.chunking import MEMORY_BUDGET
    from explain.metrics import report
    from explain.primer import depth
    from explain.saliency.registry import METHODS
    from explain.sensitivity import local

    assert tuple(METHODS) == _choices.SALIENCY_METHODS  # in order: method keys are folded with the index
    assert _choices.SENSITIVITY_METHODS == local.METHODS and _choices.SENSITIVITY_BASELINES == local.BASELINES
    assert _choices.SUITES == SUITES and _choices.LABEL_CHOICES == LABEL_CHOICES
    assert tuple(depth.ACTIVATIONS) == _choices.DEPTH_ACTIVATIONS and tuple(depth.INITS) == _choices.DEPTH_INITS
    assert _choices.MEMORY_BUDGET == MEMORY_BUDGET
    assert tuple(report.METRICS) == _choices.METRICS and report.DEFAULT_METRICS == _choices.DEFAULT_METRICS


HELP_WITHOUT_JAX = """
import json, sys
from explain.__main__ import COMMANDS, available, main
seen = {}
for command in available():
    try:
        main([command, "--help"])
    except SystemExit as e:
        seen[command] = e.code
heavy = sorted(m for m in ("jax", "jaxlib", "flax", "optax", "ray", "models.registry", "explain.model") if m in sys.modules)
print(json.dumps({"codes": seen, "heavy": heavy}))
"""


def test_help_imports_no_jax():
    """Every command's ``--help`` in a fresh interpreter: answered, and nothing heavy imported."""
    done = subprocess.run([sys.executable, "-c", HELP_WITHOUT_JAX], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert set(result["codes"]) >= set(COMMANDS) - {"export"} and set(result["codes"].values()) == {0}
    assert result["heavy"] == []
