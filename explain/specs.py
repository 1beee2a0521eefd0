"""Model specs: the one place where a string (``--model``) becomes a model.

A spec is one of

* a shipped name, e.g. ``"shapes_cnn"``: resolved through the same entry-point
  mechanism as a user's model, the provider :data:`SHIPPED_PROVIDER`
  (``"models:load"``, called with the name) and the list of names
  :data:`SHIPPED_NAMES_PROVIDER` (``"models.names:NAMES"``, plain data without JAX); both
  are strings, imported only when a shipped name is asked for, so ``explain`` never
  imports ``models``;
* ``"package.module:factory"``: an importable module and a callable in it
  (``factory.attr`` reaches nested attributes), the uvicorn/gunicorn convention;
* ``"path/to/file.py:factory"``: the same for a Python file;
* ``"path/to/artifact"`` (a folder holding ``model.json``) or ``"path/to/artifact/model.json"``:
  a :mod:`jax.export` artifact written by ``python -m explain export``
  (:mod:`explain.exported`), loaded without its code, Flax or ``models``; its dataset is the
  test rows the export kept (``data.npz``), when it kept some. A bare name that is also a
  shipped name stays the shipped model (write ``./name`` for the folder).

The factory takes no arguments and returns an :class:`explain.Model`, or a
bundle with ``.model`` and optionally ``.dataset`` (``.train`` / ``.val`` /
``.test`` splits with ``.x`` and ``.y``), ``.class_names`` and ``.name``. An
attribute that already is a model or a bundle is used as is.

Every mistake in a spec raises :class:`SpecError` with a one-line message,
before the model is built: an unknown name (listing the shipped ones), a module
or file that is not there, a file that is not Python, a missing attribute, a
factory needing arguments or returning the wrong type, a folder without
``model.json``, a ``.json`` that is not an artifact's or an artifact that fails
its checks. Importing this module imports no JAX (``--help`` stays fast).

Example::

    $ cat my_model.py
    def make():
        module, variables = ...
        return explain.from_linen(module, variables, input_shape=(10,), output_kind="regression")
    $ python -m explain sensitivity --model my_model.py:make --data rows.csv
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: this module imports no JAX
    from explain.model import Model

SHIPPED_PROVIDER = "models:load"  # name -> bundle with .model, .dataset
SHIPPED_NAMES_PROVIDER = "models.names:NAMES"  # the shipped names (any iterable of str), plain data
FORMS = "a shipped name, 'package.module:factory', 'path/to/file.py:factory' or an exported artifact folder"
HELP = (
    f"the model: {FORMS} (the factory returns an explain.Model or a bundle with .model; "
    "the folder holds model.json, see `python -m explain export`)"
)
ARTIFACT_METADATA = "model.json"  # explain.exported.METADATA, repeated so this module needs no JAX


class SpecError(ValueError):
    """A model spec that cannot be resolved; the message is one line and says why."""


class SpecTypeError(SpecError, TypeError):
    """A factory (or attribute) of the wrong type."""


@dataclasses.dataclass(frozen=True, eq=False)
class Resolved:
    """What a spec names: a model and, when its provider gave them, its data and class names.

    Has ``.model``, so every library function accepts it in place of the model.

    Attributes:
      spec: the string it was resolved from.
      name: the shipped name, the bundle's ``.name``, or ``model.name``.
      model: the :class:`~explain.model.Model`.
      dataset: the bundle's ``.dataset`` (splits ``.train`` / ``.val`` / ``.test`` with ``.x``, ``.y``), or ``None``.
      class_names: ``model.class_names``, else the bundle's or its dataset's, else ``None``.
      source: what the provider returned (e.g. a ``models.Bundle``).
    """

    spec: str
    name: str
    model: Model
    dataset: Any = None
    class_names: tuple[str, ...] | None = None
    source: Any = None

    @property
    def stem(self) -> str:
        """:attr:`name` made safe for a file name."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or "model"

    def split(self, which: str, *, command: str) -> Any:
        """The dataset split ``which`` (with ``.x`` and ``.y``); ``SpecError`` when the spec gave no such data."""
        split = getattr(self.dataset, which, None)
        if split is None or not (hasattr(split, "x") and hasattr(split, "y")):
            what = "no dataset" if self.dataset is None else f"a dataset without a {which!r} split with .x and .y"
            raise SpecError(
                f"model {self.spec!r} comes with {what}; the {command} command reads its inputs from "
                f"dataset.{which}.x and .y: return a bundle with .model and .dataset from the factory"
            )
        return split


def _is_dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _is_file(text: str) -> bool:
    return text.endswith(".py") or "/" in text or "\\" in text or Path(text).is_file()


def _import_module(spec: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            raise SpecError(
                f"model {spec!r}: no module named {e.name!r} (not installed, nor on the Python path)"
            ) from None
        raise SpecError(f"model {spec!r}: importing module {module!r} failed: {e}") from e
    except ImportError as e:
        raise SpecError(f"model {spec!r}: importing module {module!r} failed: {e}") from e


def _import_file(spec: str, text: str) -> Any:
    path = Path(text).expanduser()
    if not path.exists():
        raise SpecError(f"model {spec!r}: no such file {str(path)!r}")
    if not path.is_file():
        raise SpecError(f"model {spec!r}: {str(path)!r} is not a file")
    if path.suffix != ".py":
        raise SpecError(f"model {spec!r}: {str(path)!r} is not a Python file (expected a .py file)")
    path = path.resolve()
    # One module per file (the path's hash keeps two files of the same name apart); registered in
    # sys.modules while it runs, as a normal import would, so dataclasses and pickling work inside it.
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_explain_spec_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise SpecError(f"model {spec!r}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        raise SpecError(f"model {spec!r}: {str(path)!r} is not valid Python: {e.msg} (line {e.lineno})") from None
    except ImportError as e:
        del sys.modules[name]
        raise SpecError(f"model {spec!r}: importing {str(path)!r} failed: {e}") from e
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _attribute(spec: str, module: Any, where: str, attr: str) -> Any:
    obj = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = where if i == 0 else f"{where}:{'.'.join(attr.split('.')[:i])}"
            public = sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))
            hint = f"; it defines {public[:12]}{' ...' if len(public) > 12 else ''}" if public else ""
            raise SpecError(f"model {spec!r}: {owner} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    return obj


def load_object(spec: str) -> Any:
    """The object a ``"module:attr"`` or ``"file.py:attr"`` string names (nothing is called)."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise SpecError(f"model {spec!r}: expected {FORMS}")
    if not _is_dotted(attr):
        raise SpecError(f"model {spec!r}: {attr!r} is not an attribute name (expected e.g. 'make_model')")
    if _is_file(where):
        module = _import_file(spec, where)
    elif _is_dotted(where):
        module = _import_module(spec, where)
    else:
        raise SpecError(f"model {spec!r}: {where!r} is neither a module name nor a .py file")
    return _attribute(spec, module, where, attr)


def _model_of(obj: Any) -> Model | None:
    from explain.model import Model

    if isinstance(obj, Model):
        return obj
    inner = getattr(obj, "model", None)
    return inner if isinstance(inner, Model) else None


def _call_factory(spec: str, factory: Any) -> Any:
    if _model_of(factory) is not None:
        return factory
    if not callable(factory):
        raise SpecTypeError(
            f"model {spec!r}: expected a factory (a callable), an explain.Model or a bundle with .model, "
            f"got {type(factory).__name__}"
        )
    try:
        required = [
            p.name
            for p in inspect.signature(factory).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):  # builtins without a signature: call and see
        required = []
    if required:
        raise SpecTypeError(f"model {spec!r}: the factory is called with no arguments, but it requires {required}")
    return factory()


def _bundle(spec: str, name: str | None, obj: Any) -> Resolved:
    model = _model_of(obj)
    if model is None:
        raise SpecTypeError(
            f"model {spec!r}: the factory returned {type(obj).__name__}; "
            "expected an explain.Model or a bundle with a .model that is one"
        )
    dataset = None if obj is model else getattr(obj, "dataset", None)
    own = None if obj is model else getattr(obj, "name", None)
    class_names = model.class_names
    if class_names is None and obj is not model:
        names = getattr(obj, "class_names", None)
        names = getattr(dataset, "class_names", None) if names is None else names
        class_names = None if names is None else tuple(map(str, names))
    label = name or (own if isinstance(own, str) and own else model.name)
    return Resolved(spec=spec, name=label, model=model, dataset=dataset, class_names=class_names, source=obj)


def shipped_names() -> tuple[str, ...]:
    """The shipped names (from :data:`SHIPPED_NAMES_PROVIDER`), or ``()`` when no shipped models are installed."""
    try:
        names = load_object(SHIPPED_NAMES_PROVIDER)
    except SpecError:
        return ()
    return tuple(sorted(map(str, names)))


def _is_artifact_path(spec: str) -> bool:
    """Whether ``spec`` names an artifact: a ``.json`` file, a path to a folder, or a folder holding model.json."""
    if spec.endswith(".json"):
        return True
    path = Path(spec).expanduser()
    if not path.is_dir():
        return False
    # A bare word that is also a shipped name stays the shipped model; "./name" is the folder.
    return ("/" in spec or "\\" in spec) or ((path / ARTIFACT_METADATA).is_file() and spec not in shipped_names())


def _artifact(spec: str) -> Resolved:
    """The artifact a folder or its ``model.json`` names (see :mod:`explain.exported`)."""
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / ARTIFACT_METADATA).is_file():
        raise SpecError(
            f"model {spec!r}: the folder holds no {ARTIFACT_METADATA} "
            "(expected an artifact written by `python -m explain export`)"
        )
    if not path.is_dir() and not path.is_file():
        raise SpecError(f"model {spec!r}: no such file {str(path)!r}")
    from explain import exported

    try:
        model = exported.load(path)
        samples = exported.load_samples(path)  # the rows kept by `export`, the commands' default inputs
    except exported.ExportError as e:
        raise SpecError(f"model {spec!r}: {e}") from None
    return Resolved(
        spec=spec, name=model.name, model=model, dataset=samples, class_names=model.class_names, source=path
    )


def resolve(spec: str) -> Resolved:
    """The model (and its data, when it comes with some) that ``spec`` names; see the module docstring.

    Raises:
      SpecError: a one-line message (unknown name listing the shipped ones, module or file not
        found, not a Python file, missing attribute, an artifact folder without model.json, a .json
        that is not an artifact's, an artifact failing its checks); :class:`SpecTypeError` for a
        factory that needs arguments or returns something other than a model or a bundle.
    """
    if not isinstance(spec, str):
        raise SpecTypeError(f"expected a model spec string ({FORMS}), got {type(spec).__name__}")
    spec = spec.strip()
    if not spec:
        raise SpecError(f"expected a model: {FORMS}, got an empty string")
    if ":" in spec:
        return _bundle(spec, None, _call_factory(spec, load_object(spec)))
    if _is_artifact_path(spec):
        return _artifact(spec)
    names = shipped_names()
    if spec not in names:
        if _is_file(spec) and not spec.endswith(".py") and not Path(spec).expanduser().exists():
            raise SpecError(f"model {spec!r}: no such file or folder (expected an artifact folder or a .py file)")
        if _is_file(spec):
            raise SpecError(f"model {spec!r}: name the factory too, as 'path/to/file.py:factory'")
        known = f"one of {list(names)}" if names else "none (no shipped models installed)"
        raise SpecError(
            f"unknown model {spec!r}; shipped names: {known}, or 'package.module:factory', or 'path/to/file.py:factory'"
        )
    return _bundle(spec, spec, load_object(SHIPPED_PROVIDER)(spec))
