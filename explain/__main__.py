"""The command line: ``python -m explain COMMAND ...``.

Each command lives in ``explain/cli/COMMAND.py`` with ``add_arguments(parser)``
and ``run(args) -> int``; this file is only the table. Every ``--model`` is
resolved by :func:`explain.specs.resolve` (a shipped name, ``package.module:factory``,
``path/to/file.py:factory`` or an exported artifact folder), so the command line,
like the library, never imports the ``models`` package.

Bad arguments are reported the argparse way whether they are found while parsing or
only once the model or the data is loaded: the usage, then one line
``python -m explain COMMAND: error: ...``, exit status 2, no traceback. Building the
parser imports no JAX, so ``--help`` answers at once; commands import what they need in ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from explain.cli import _args
from explain.specs import SpecError

SCRIPT = "flax-explain"  # [project.scripts] in pyproject.toml
COMMANDS: dict[str, str] = {
    "saliency": "Attribution maps for image models, as a labelled PNG grid.",
    "sensitivity": "Feature-sensitivity ranking for a tabular model.",
    "robustness": "Robustness evaluation: accuracy against epsilon per attack.",
    "gradflow": "Gradient flow: per-layer norms and the depth experiment.",
    "export": "Export a model as a jax.export artifact folder (StableHLO + params + metadata).",
    "serve": "Serve explanations over HTTP (KServe V1: predict, explain, attack).",
    "evaluate": "Which map can I trust? Explanation-quality metrics per method: a table, CSV, JSON and a PNG report card.",
    "attribute": "Attribute a whole dataset: shards, a Parquet index and a manifest; resumable.",
}

# Errors that mean "a bad argument" (a spec, a data file, an artifact), by module: a module that was never
# imported cannot have raised its error, so only the loaded ones are looked up (nothing heavy is imported here).
_USER_ERRORS = {"explain.data": "DataError", "explain.exported": "ExportError"}


def available() -> dict[str, ModuleType]:
    """The command modules that are installed, by name (a missing ``explain/cli/NAME.py`` is left out)."""
    mods = {}
    for name in COMMANDS:
        try:
            mods[name] = importlib.import_module(f"explain.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"explain.cli.{name}":
                raise
    return mods


def examples(doc: str | None) -> str | None:
    """The ``python -m explain ...`` lines of a command module's docstring, as the help's epilog."""
    lines = [line.strip() for line in (doc or "").splitlines() if line.strip().startswith("python -m explain")]
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and each command's subparser (whose ``error`` reports that command's bad arguments)."""
    # The console script (`pip install .`) names itself; everything else is `python -m explain`.
    prog = SCRIPT if Path(sys.argv[0]).name == SCRIPT else "python -m explain"
    parser = argparse.ArgumentParser(prog=prog, description="Gradient explanations for Flax models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subparsers = {}
    for name, mod in available().items():
        p = sub.add_parser(
            name,
            help=COMMANDS[name],
            description=COMMANDS[name],
            epilog=examples(mod.__doc__),
            formatter_class=_args.HelpFormatter,
        )
        mod.add_arguments(p)
        subparsers[name] = p
    return parser, subparsers


def is_usage_error(error: BaseException) -> bool:
    """Whether ``error`` reports a bad argument (shown as one ``error:`` line) rather than a bug (a traceback)."""
    kinds = [_args.UsageError, SpecError]
    kinds += [getattr(sys.modules[m], cls) for m, cls in _USER_ERRORS.items() if hasattr(sys.modules.get(m), cls)]
    return isinstance(error, tuple(kinds))


def main(argv: list[str] | None = None) -> int:
    """Runs one command; bad arguments exit with status 2 through ``parser.error`` (:class:`SystemExit`)."""
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    from explain import runtime  # after parsing: --help imports no JAX

    runtime.configure()  # glibc malloc tunables and the persistent compilation cache, before any JAX work
    try:
        return int(importlib.import_module(f"explain.cli.{args.command}").run(args) or 0)
    except Exception as e:
        if not is_usage_error(e):
            raise
        subparsers[args.command].error(" ".join(str(e).split()))  # prints usage and the line, exits 2


if __name__ == "__main__":
    sys.exit(main())
