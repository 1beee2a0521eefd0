"""``explain.specs.resolve``: shipped names, ``module:factory`` and ``file.py:factory`` specs, one-line errors."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import explain
from explain import specs

# A user's model file: a factory returning a model, one returning a bundle with data, and wrong ones.
USER_FILE = """
import dataclasses
import types

import jax.numpy as jnp
import numpy as np

import explain

CALLS = []


def _apply(params, x):
    return x @ params["w"]


def make():
    CALLS.append("make")
    spec = explain.InputSpec(shape=(3,), feature_names=("a", "b", "c"))
    return explain.Model(_apply, {"w": jnp.ones((3, 2))}, spec, output_kind="classification", name="user_linear")


@dataclasses.dataclass
class Bundle:
    model: explain.Model
    dataset: object
    class_names: tuple
    name: str = "my bundle/v1"


def make_bundle():
    m = make()
    m = dataclasses.replace(m, class_names=None)
    split = types.SimpleNamespace(x=np.ones((4, 3), np.float32), y=np.zeros(4, np.int32))
    return Bundle(m, types.SimpleNamespace(test=split), ("no", "yes"))


MODEL = make()
factories = types.SimpleNamespace(make=make)


def wrong():
    return 42


def needs_arg(width):
    return make()


NOT_CALLABLE = 3
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text(USER_FILE)
    return path


def test_file_factory_returns_a_model(user_file):
    r = specs.resolve(f"{user_file}:make")
    assert isinstance(r.model, explain.Model) and r.model.name == "user_linear"
    assert r.name == "user_linear" and r.dataset is None and r.class_names is None
    assert r.spec == f"{user_file}:make"
    assert explain.as_model(r) is r.model  # usable wherever a model or bundle is
    np.testing.assert_array_equal(r.model.apply(r.model.params, np.ones((1, 3), np.float32)), [[3.0, 3.0]])


def test_file_factory_returns_a_bundle_with_data_and_class_names(user_file):
    r = specs.resolve(f"{user_file}:make_bundle")
    assert r.class_names == ("no", "yes") and r.name == "my bundle/v1" and r.stem == "my_bundle_v1"
    assert r.split("test", command="saliency").x.shape == (4, 3)
    with pytest.raises(specs.SpecError, match=r"without a 'train' split .* the sensitivity command"):
        r.split("train", command="sensitivity")


def test_a_model_without_data_says_which_command_needs_it(user_file):
    r = specs.resolve(f"{user_file}:make")
    with pytest.raises(specs.SpecError, match=r"comes with no dataset; the robustness command reads .*dataset.test"):
        r.split("test", command="robustness")


def test_attributes_that_already_are_models_and_nested_attributes(user_file):
    assert specs.resolve(f"{user_file}:MODEL").model.name == "user_linear"
    assert specs.resolve(f"{user_file}:factories.make").model.name == "user_linear"


def test_the_file_is_imported_once_per_path(user_file):
    specs.resolve(f"{user_file}:make")
    module = specs.load_object(f"{user_file}:CALLS")
    before = len(module)
    specs.resolve(f"{user_file}:make")
    assert len(module) == before + 1  # the factory ran again, the module body did not (MODEL is built once)


def test_module_factory(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    monkeypatch.delitem(sys.modules, "user_models", raising=False)
    r = specs.resolve("user_models:make_bundle")
    assert r.model.input_spec.shape == (3,) and r.class_names == ("no", "yes")


def test_shipped_names_go_through_the_provider_strings(user_file, monkeypatch):
    """A shipped name is resolved by importing the provider named by data, not by an import statement."""
    provider = user_file.parent / "provider.py"
    provider.write_text(
        textwrap.dedent(
            f"""
            import importlib.util
            spec = importlib.util.spec_from_file_location("user_models_for_provider", {str(user_file)!r})
            user = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(user)
            NAMES = {{"tiny": None}}
            ASKED = []

            def load(name):
                ASKED.append(name)
                return user.make_bundle()
            """
        )
    )
    monkeypatch.setattr(specs, "SHIPPED_PROVIDER", f"{provider}:load")
    monkeypatch.setattr(specs, "SHIPPED_NAMES_PROVIDER", f"{provider}:NAMES")
    assert specs.shipped_names() == ("tiny",)
    r = specs.resolve("tiny")
    assert r.name == "tiny" and r.spec == "tiny" and r.class_names == ("no", "yes")
    assert specs.load_object(f"{provider}:ASKED") == ["tiny"]
    with pytest.raises(specs.SpecError, match=r"unknown model 'shapes_cnn'; shipped names: one of \['tiny'\]"):
        specs.resolve("shapes_cnn")


def test_the_shipped_providers_are_the_models_package():
    assert specs.SHIPPED_PROVIDER == "models:load" and specs.SHIPPED_NAMES_PROVIDER == "models.names:NAMES"
    assert "friedman1_mlp" in specs.shipped_names() and "shapes_cnn" in specs.shipped_names()
    r = specs.resolve("friedman1_mlp")
    assert r.name == "friedman1_mlp" and r.model.input_spec.shape == (10,)
    assert r.split("train", command="sensitivity").x.shape[1] == 10


def test_no_shipped_models_installed(monkeypatch):
    monkeypatch.setattr(specs, "SHIPPED_NAMES_PROVIDER", "no_such_models_pkg:SPECS")
    assert specs.shipped_names() == ()
    with pytest.raises(specs.SpecError, match=r"unknown model 'shapes_cnn'; shipped names: none"):
        specs.resolve("shapes_cnn")


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("resnet", specs.SpecError, r"^unknown model 'resnet'; shipped names: one of \[.*'shapes_cnn'.*\], or "),
        ("", specs.SpecError, r"^expected a model: a shipped name, .* got an empty string$"),
        ("no_such_pkg.sub:make", specs.SpecError, r"^model 'no_such_pkg.sub:make': no module named 'no_such_pkg'"),
        ("explain:no_such_factory", specs.SpecError, r"^model 'explain:no_such_factory': explain has no attribute "),
        ("explain.model:Model.nope", specs.SpecError, r"explain.model:Model has no attribute 'nope'"),
        ("explain:", specs.SpecError, r"^model 'explain:': expected a shipped name"),
        (":make", specs.SpecError, r"^model ':make': expected a shipped name"),
        ("explain:make-model", specs.SpecError, r"'make-model' is not an attribute name"),
        ("my model:make", specs.SpecError, r"'my model' is neither a module name nor a .py file"),
        ("explain.model:Model", specs.SpecTypeError, r"called with no arguments, but it requires \['apply', "),
    ],
)
def test_errors_are_one_line(spec, error, match):
    with pytest.raises(error, match=match) as info:
        specs.resolve(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("attr", "error", "match"),
    [
        (
            "wrong",
            specs.SpecTypeError,
            r"the factory returned int; expected an explain.Model or a bundle with a .model",
        ),
        ("needs_arg", specs.SpecTypeError, r"called with no arguments, but it requires \['width'\]"),
        ("NOT_CALLABLE", specs.SpecTypeError, r"expected a factory \(a callable\), .* got int"),
        ("missing", specs.SpecError, r"user_models.py has no attribute 'missing'; it defines \[.*'make'"),
    ],
)
def test_file_errors_are_one_line(user_file, attr, error, match):
    with pytest.raises(error, match=match) as info:
        specs.resolve(f"{user_file}:{attr}")
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path):
    (tmp_path / "weights.msgpack").write_bytes(b"\x00\x01")
    (tmp_path / "broken.py").write_text("def make(:\n    pass\n")
    (tmp_path / "imports.py").write_text("import no_such_dependency_pkg\n")
    (tmp_path / "folder.py").mkdir()
    cases = {
        f"{tmp_path}/weights.msgpack:make": r"weights.msgpack' is not a Python file \(expected a .py file\)$",
        f"{tmp_path}/missing.py:make": r"no such file '.*missing.py'$",
        f"{tmp_path}/broken.py:make": r"broken.py' is not valid Python: .* \(line 1\)$",
        f"{tmp_path}/imports.py:make": r"importing '.*imports.py' failed: No module named 'no_such_dependency_pkg'$",
        f"{tmp_path}/folder.py:make": r"folder.py' is not a file$",
        f"{tmp_path}/broken.py": r"name the factory too, as 'path/to/file.py:factory'$",
    }
    for spec, match in cases.items():
        with pytest.raises(specs.SpecError, match=match) as info:
            specs.resolve(spec)
        assert "\n" not in str(info.value), spec
    assert not [m for m in sys.modules if m.startswith("_explain_spec_broken")]  # a failed import leaves nothing


def test_an_error_inside_the_factory_is_the_users_and_keeps_its_traceback(tmp_path):
    (tmp_path / "boom.py").write_text("def make():\n    raise RuntimeError('out of memory building it')\n")
    with pytest.raises(RuntimeError, match="out of memory building it"):
        specs.resolve(f"{tmp_path}/boom.py:make")


def test_artifact_spec_errors_are_one_line(tmp_path):
    """Folders and ``.json`` files name artifacts (:mod:`explain.exported`); what is not one says why, in one line."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    cases = {
        f"{tmp_path}/empty": r"the folder holds no model.json \(expected an artifact written by `python -m explain ",
        f"{tmp_path}/missing.json": r"no such file '.*missing.json'$",
        f"{tmp_path}/other.json": r"other.json: not an explain artifact \(expected \"format\": 'explain.exported'",
        f"{tmp_path}/no_such_folder": r"no such file or folder \(expected an artifact folder or a .py file\)$",
    }
    for spec, match in cases.items():
        with pytest.raises(specs.SpecError, match=f"^model '{spec}': .*{match}") as info:
            specs.resolve(spec)
        assert "\n" not in str(info.value), spec
