"""The command line: ``python -m explain COMMAND ...``.

Each command lives in ``explain/cli/COMMAND.py`` with ``add_arguments(parser)``
and ``run(args) -> int``; this file is only the table. Every ``--model`` is
resolved by :func:`explain.specs.resolve` (a shipped name, ``package.module:factory``
or ``path/to/file.py:factory``), so the command line, like the library, never
imports the ``models`` package; a spec that cannot be resolved prints one line
and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from explain.specs import SpecError

COMMANDS: dict[str, str] = {
    "saliency": "Attribution maps for image models, as a labelled PNG grid.",
    "sensitivity": "Feature-sensitivity ranking for a tabular model.",
    "robustness": "Robustness evaluation: accuracy against epsilon per attack.",
    "gradflow": "Gradient flow: per-layer norms and the depth experiment.",
}


def available() -> dict[str, object]:
    mods = {}
    for name in COMMANDS:
        try:
            mods[name] = importlib.import_module(f"explain.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"explain.cli.{name}":
                raise
    return mods


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain", description="Gradient explanations for Flax models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mods = available()
    for name, mod in mods.items():
        p = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return int(mods[args.command].run(args) or 0)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
