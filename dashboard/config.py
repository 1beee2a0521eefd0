"""Which models the dashboard shows: read from the process's own arguments and environment, never from a page.

Two ways to name models, merged in this order (command line first, duplicates dropped):

* ``streamlit run app.py -- --model SPEC [--data PATH] [--model SPEC [--data PATH] ...] [--only]``:
  each ``--data`` belongs to the ``--model`` just before it (at most one each);
* ``EXPLAIN_MODELS="SPEC[@PATH];SPEC[@PATH]"`` (``;`` between models, ``@`` before a model's data path)
  and ``EXPLAIN_ONLY=1``, for deployments where the command line is fixed.

``SPEC`` is anything :func:`explain.specs.resolve` accepts (a shipped name, ``module:factory``,
``path/to/file.py:factory``); ``PATH`` anything :func:`explain.data.load` reads. ``--only`` hides the
shipped models. A model's key on every page is ``SPEC`` or ``SPEC@PATH``: the same string in both forms.
Nothing here imports a spec; that happens in :mod:`dashboard.state`, inside the page's error handling.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence

ENV_MODELS = "EXPLAIN_MODELS"
ENV_ONLY = "EXPLAIN_ONLY"
SEPARATOR = ";"  # between models in $EXPLAIN_MODELS
DATA_MARK = "@"  # between a model's spec and its data path
TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")


class ConfigError(ValueError):
    """Arguments or environment that do not name models the way :mod:`dashboard.config` documents."""


@dataclasses.dataclass(frozen=True)
class ModelArg:
    """One user model: its spec and, optionally, the path of its data."""

    spec: str
    data: str | None = None

    @property
    def key(self) -> str:
        """The model's key on every page: ``SPEC`` or ``SPEC@PATH``."""
        return self.spec if self.data is None else f"{self.spec}{DATA_MARK}{self.data}"


@dataclasses.dataclass(frozen=True)
class Config:
    """The user's models, in order, and whether the shipped ones are hidden."""

    models: tuple[ModelArg, ...] = ()
    only: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit the server process; the page reports it instead
        raise ConfigError(f"dashboard arguments: {message} (usage: {self.format_usage().strip()})")


class _ModelAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        namespace.models = [*namespace.models, ModelArg(_nonempty(values, "--model"))]


class _DataAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        if not namespace.models:
            raise ConfigError(
                f"dashboard arguments: --data {values} comes before any --model; expected --model SPEC --data PATH"
            )
        last = namespace.models[-1]
        if last.data is not None:
            raise ConfigError(
                f"dashboard arguments: model {last.spec!r} has two --data paths; expected at most one --data per --model"
            )
        namespace.models = [*namespace.models[:-1], ModelArg(last.spec, _nonempty(values, "--data"))]


def _nonempty(text: str, option: str) -> str:
    text = text.strip()
    if not text:
        raise ConfigError(f"dashboard arguments: {option} needs a non-empty value")
    return text


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="streamlit run app.py --",
        description="Gradient explainability dashboard on shipped models and yours.",
        allow_abbrev=False,  # pytest's and Streamlit's own flags must never pass for ours
    )
    p.set_defaults(models=[])
    p.add_argument("--model", action=_ModelAction, metavar="SPEC", help="a model spec (repeatable)")
    p.add_argument("--data", action=_DataAction, metavar="PATH", help="data for the --model just before it")
    p.add_argument("--only", action="store_true", help="show only the models given, not the shipped ones")
    return p


def parse_argv(argv: Sequence[str]) -> Config:
    """The models named on the command line after ``--``. Raises :class:`ConfigError` (usage included)."""
    ns = parser().parse_args(list(argv))
    return Config(tuple(ns.models), bool(ns.only))


def parse_env(environ: Mapping[str, str]) -> Config:
    """The models of ``$EXPLAIN_MODELS`` (``SPEC[@PATH]`` separated by ``;``) and ``$EXPLAIN_ONLY``."""
    found = []
    for item in environ.get(ENV_MODELS, "").split(SEPARATOR):
        if not item.strip():
            continue  # a trailing ';' is harmless
        spec, mark, data = item.partition(DATA_MARK)
        if not spec.strip() or (mark and not data.strip()):
            raise ConfigError(f"${ENV_MODELS}: expected SPEC or SPEC{DATA_MARK}PATH, got {item.strip()!r}")
        found.append(ModelArg(spec.strip(), data.strip() if mark else None))
    only = environ.get(ENV_ONLY, "").strip().lower()
    if only not in TRUE + FALSE:
        raise ConfigError(f"${ENV_ONLY}: expected 1 or 0, got {only!r}")
    return Config(tuple(found), only in TRUE)


def merge(*configs: Config) -> Config:
    """The models of every config in order, each key once; ``only`` when any says so."""
    seen: dict[str, ModelArg] = {}
    for c in configs:
        for m in c.models:
            seen.setdefault(m.key, m)
    return Config(tuple(seen.values()), any(c.only for c in configs))


def from_process(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """The command line's models, then the environment's; an ``--only`` without any model is an error."""
    cfg = merge(parse_argv(argv), parse_env(environ))
    if cfg.only and not cfg.models:
        raise ConfigError(
            f"--only (or ${ENV_ONLY}=1) hides the shipped models, but no --model or ${ENV_MODELS} was given"
        )
    return cfg
