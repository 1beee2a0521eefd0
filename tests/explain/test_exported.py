"""``jax.export`` artifacts (:mod:`explain.exported`): the loaded model against the live one, loading without Flax
or ``models``, tampering refused with one line naming the file, layer methods and second order.

Each model is exported once per module (compiling dominates); tampering works on copies of the folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import explain
from explain import exported, specs, targets


def rel_l2(a, b) -> float:
    """``‖a − b‖ / ‖b‖`` (``b`` checked non-zero, so a match is not two zeros)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.linalg.norm(b) > 0
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """``(folder, live resolved shapes_cnn, 16 test images)``; exported once."""
    folder = exported.export("shapes_cnn", tmp_path_factory.mktemp("art") / "shapes_cnn")
    live = specs.resolve("shapes_cnn")
    return folder, live, np.asarray(live.dataset.test.x[:16], np.float32)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """``(folder, live friedman1_mlp, 32 test rows)``; exported once."""
    folder = exported.export("friedman1_mlp", tmp_path_factory.mktemp("art") / "friedman1")
    live = specs.resolve("friedman1_mlp")
    return folder, live, np.asarray(live.dataset.test.x[:32], np.float32)


@pytest.fixture
def copy(tmp_path):
    """``copy(folder)``: a copy of an artifact folder to tamper with."""
    return lambda folder: Path(shutil.copytree(folder, tmp_path / "copy"))


# ----------------------------------------------------------------------------- the loaded model is the live one


def test_cnn_predictions_gradients_and_ig_match_the_live_model(cnn):
    folder, live, x = cnn
    m = exported.load(folder)
    assert m.origin == "export" and m.tap is None and m.name == "shapes_cnn"
    assert m.input_spec == live.model.input_spec and m.class_names == live.class_names
    assert rel_l2(m.apply(m.params, x), live.model.apply(live.model.params, x)) <= 1e-6
    g, g_live = explain.input_gradients(m, x), explain.input_gradients(live, x)
    assert rel_l2(g.values, g_live.values) <= 1e-6
    ig, ig_live = explain.integrated_gradients(m, x, steps=32), explain.integrated_gradients(live, x, steps=32)
    assert rel_l2(ig.values, ig_live.values) <= 1e-6


def test_cnn_hvp_through_a_smooth_target_matches_the_live_model(cnn):
    """Forward over reverse through log-softmax needs ``J v`` of the artifact: computed from the order-1 VJP, as
    the order-2 VJP's ``c`` output came back as uninitialised memory (1e30s) under jit (an XLA miscompile)."""
    folder, live, x = cnn
    m = exported.load(folder)
    v = np.random.default_rng(0).normal(size=x[:4].shape).astype(np.float32)
    target = targets.class_score(1, score="log_prob")
    h_live = explain.hvp(live, x[:4], v=v, target=target)
    h = explain.hvp(m, x[:4], v=v, target=target)
    assert np.isfinite(np.asarray(h)).all() and rel_l2(h, h_live) <= 1e-5


def test_mlp_gradients_hvp_interactions_and_vmap_match_the_live_model(mlp):
    folder, live, x = mlp
    m = exported.load(folder)
    assert m.output_kind == "regression" and m.input_spec.feature_names == live.model.input_spec.feature_names
    assert rel_l2(m.apply(m.params, x), live.model.apply(live.model.params, x)) <= 1e-6
    assert rel_l2(explain.input_gradients(m, x).values, explain.input_gradients(live, x).values) <= 1e-6
    v = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    assert rel_l2(explain.hvp(m, x, v=v), explain.hvp(live, x, v=v)) <= 1e-5
    inter, inter_live = explain.sensitivity.interactions(m, x), explain.sensitivity.interactions(live, x)
    assert rel_l2(inter.matrix, inter_live.matrix) <= 1e-5 and inter.top_pairs(1)[0][:2] == ("x0", "x1")
    # A batch of batches folds into the symbolic batch dimension; params gradients work too.
    folded = jax.vmap(lambda xb: m.apply(m.params, xb))(jnp.asarray(x).reshape(4, 8, -1))
    assert rel_l2(folded.reshape(32, -1), m.apply(m.params, x)) <= 1e-6
    grads = jax.grad(lambda p: m.apply(p, x).sum())(m.params)  # keyed "params/Dense_0/kernel"
    grads_live, _ = exported._named_params(jax.grad(lambda p: live.model.apply(p, x).sum())(live.model.params))
    assert sorted(grads) == sorted(grads_live)
    assert max(rel_l2(grads[k], grads_live[k]) for k in grads) <= 1e-6


def test_second_order_needs_the_order_two_vjp_and_refuses_params_forward_mode(mlp, tmp_path):
    folder, live, x = mlp
    first = exported.export(live, tmp_path / "order1", vjp_order=1)
    m1 = exported.load(first)
    assert rel_l2(explain.input_gradients(m1, x).values, explain.input_gradients(live, x).values) <= 1e-6
    with pytest.raises(exported.ExportError) as info:
        explain.hvp(m1, x, v=x)
    # str(), not match=: JAX adds a note to errors raised while tracing, and pytest matches notes too.
    assert str(info.value) == (
        "model.stablehlo: this derivative needs the VJP of order 2, the artifact holds 1; "
        "export it again with vjp_order=2"
    )
    m = exported.load(folder)
    with pytest.raises(exported.ExportError, match="forward-mode derivatives in the parameters"):
        jax.jvp(lambda p: jax.grad(lambda q: m.apply(q, x).sum())(p), (m.params,), (m.params,))


def test_loading_imports_neither_flax_nor_models(cnn):
    folder, _, x = cnn
    code = (
        "import sys, numpy as np; from explain import exported; "
        f"m = exported.load({str(folder)!r}); "
        f"y = np.asarray(m.apply(m.params, np.zeros((1, *m.input_spec.shape), np.float32))); "
        "print(y.shape, sorted(k for k in sys.modules if k.split('.')[0] in ('flax', 'models', 'optax')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "(1, 4) []"


# ----------------------------------------------------------------------------- what cannot work says why


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: explain.grad_cam(m, x),
        lambda m, x: explain.guided_backprop(m, x),
        lambda m, x: explain.gradient_flow(m, x),
        lambda m, x: explain.layer_gradients(m, x, layer="conv"),
    ],
    ids=["grad_cam", "guided_backprop", "gradient_flow", "layer_gradients"],
)
def test_layer_methods_say_an_artifact_has_no_layers(cnn, call):
    folder, _, x = cnn
    with pytest.raises(ValueError, match=r"is a jax.export artifact: it keeps no layer structure .* Python spec$"):
        call(exported.load(folder), x[:2])


def test_export_refuses_bad_arguments(mlp, tmp_path):
    folder, live, _ = mlp
    with pytest.raises(exported.ExportError, match=r"is not empty; expected a new or empty folder"):
        exported.export(live, folder)
    with pytest.raises(exported.ExportError, match=r"expected vjp_order an integer >= 1"):
        exported.export(live, tmp_path / "a", vjp_order=0)
    with pytest.raises(exported.ExportError, match=r"is already a jax.export artifact; copy its folder instead$"):
        exported.export(str(folder), tmp_path / "b")
    one_hot = types.SimpleNamespace(test=types.SimpleNamespace(x=live.dataset.test.x[:4], y=np.eye(4)))
    with pytest.raises(exported.ExportError, match=r"numeric y \(n,\), got x \(4, 10\) and y float64\(4, 4\); export"):
        exported.export(types.SimpleNamespace(model=live.model, dataset=one_hot), tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")


# ----------------------------------------------------------------------------- tampering


def _edit_json(folder: Path, edit) -> None:
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_params_and_rehash(folder: Path) -> None:
    data = (folder / "params.npz").read_bytes()[:1000]
    (folder / "params.npz").write_bytes(data)
    _edit_json(folder, lambda m: m["files"]["params.npz"].update(sha256=hashlib.sha256(data).hexdigest()))


TAMPERING = {
    "byte flipped in model.stablehlo": (
        lambda f: _flip_byte(f / "model.stablehlo", 5000),
        r"^model.stablehlo: sha256 mismatch \(expected [0-9a-f]{64}, got [0-9a-f]{64}\): the file was modified",
    ),
    "wrong sha256 in model.json": (
        lambda f: _edit_json(f, lambda m: m["files"]["params.npz"].update(sha256="0" * 64)),
        r"^params.npz: sha256 mismatch \(expected 0{64}, got",
    ),
    "wrong input shape in model.json": (
        lambda f: _edit_json(f, lambda m: m["input"].update(shape=[32, 32, 3])),
        r"^model.json: input shape \(32, 32, 3\) does not match model.stablehlo's input \(b, 64, 64, 3\)",
    ),
    "params truncated": (
        lambda f: (f / "params.npz").write_bytes((f / "params.npz").read_bytes()[:1000]),
        r"^params.npz: sha256 mismatch",
    ),
    "params truncated, hash updated": (_truncate_params_and_rehash, r"^params.npz: not a readable .npz"),
    "model.json not an object": (
        lambda f: (f / "model.json").write_text("[1, 2]"),
        r"^model.json: expected a JSON object, got list$",
    ),
    "model.json not JSON": (lambda f: (f / "model.json").write_text("{"), r"^model.json: not valid JSON"),
    "model.json missing a key": (
        lambda f: _edit_json(f, lambda m: m.pop("num_outputs")),
        r"^model.json: missing key\(s\) \['num_outputs'\]$",
    ),
    "missing params.npz": (lambda f: (f / "params.npz").unlink(), r"^params.npz: missing from '.*copy'"),
    "missing model.json": (lambda f: (f / "model.json").unlink(), r"^model.json: no such file in '.*copy'$"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_refused_naming_the_file_and_the_problem(cnn, copy, case):
    tamper, match = TAMPERING[case]
    folder = copy(cnn[0])
    tamper(folder)
    with pytest.raises(exported.ExportError, match=match) as info:
        exported.load(folder)
    assert "\n" not in str(info.value)


def test_tampered_samples_are_refused_by_the_spec(cnn, copy):
    folder = copy(cnn[0])
    _flip_byte(folder / "data.npz", 100)
    with pytest.raises(specs.SpecError, match=r"^model '.*copy': data.npz: sha256 mismatch"):
        specs.resolve(str(folder))


# ----------------------------------------------------------------------------- as a spec


def test_a_folder_or_its_model_json_is_a_spec_with_the_kept_samples(cnn):
    folder, live, _ = cnn
    for spec in (str(folder), str(folder / "model.json")):
        r = specs.resolve(spec)
        assert r.name == "shapes_cnn" and r.model.origin == "export" and r.class_names == live.class_names
        test = r.split("test", command="saliency")
        assert test.x.shape == (exported.SAMPLES, 64, 64, 3) and test.y.shape == (exported.SAMPLES,)
        np.testing.assert_array_equal(test.x, live.dataset.test.x[: exported.SAMPLES])
        np.testing.assert_array_equal(test.y, live.dataset.test.y[: exported.SAMPLES])


def test_no_samples_and_no_dataset(mlp, tmp_path):
    _, live, _ = mlp
    folder = exported.export(live.model, tmp_path / "bare", samples=0)  # a Model alone: no dataset
    meta = exported.read_metadata(folder / "model.json")
    assert sorted(meta["files"]) == ["model.stablehlo", "params.npz"] and not (folder / "data.npz").exists()
    r = specs.resolve(str(folder))
    assert r.dataset is None
    with pytest.raises(specs.SpecError, match="comes with no dataset"):
        r.split("test", command="sensitivity")
