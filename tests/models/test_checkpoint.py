"""Safe checkpoints: round trip, and every kind of damage named in the error."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import checkpoint
from models.checkpoint import CheckpointError


@pytest.fixture
def saved(tmp_path):
    variables = {
        "params": {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3, np.float32)}}
    }
    path = tmp_path / "m.msgpack"
    checkpoint.save(path, variables, {"model": "m"})
    template = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
    return path, variables, template


def test_round_trip_and_metadata(saved):
    path, variables, template = saved
    restored, meta = checkpoint.load(path, template)
    np.testing.assert_array_equal(restored["params"]["dense"]["kernel"], variables["params"]["dense"]["kernel"])
    assert meta["sha256"] == checkpoint.sha256_file(path) and meta["file"] == "m.msgpack"


@pytest.mark.parametrize("text", ["[1, 2]", '"m"', "3", "null"])
def test_metadata_that_is_json_but_not_an_object_is_refused(saved, text):
    path, _, template = saved
    path.with_suffix(".json").write_text(text)
    with pytest.raises(CheckpointError, match=r"m\.json: expected a JSON object of metadata, got a JSON"):
        checkpoint.load(path, template)


def test_metadata_naming_another_model_is_refused(saved):
    path, _, template = saved
    with pytest.raises(CheckpointError, match=r"m\.json: the metadata describes model 'm', but 'other' was asked"):
        checkpoint.load(path, template, model="other")
    assert checkpoint.load(path, template, model="m")[1]["model"] == "m"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(tmp_path, bad):
    kernel = np.zeros((2, 3), np.float32)
    kernel[1, 2] = bad
    variables = {"params": {"dense": {"kernel": kernel}}}
    path = tmp_path / "m.msgpack"
    checkpoint.save(path, variables, {"model": "m"})
    template = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
    with pytest.raises(CheckpointError, match=r"m\.msgpack: \['params'\]\['dense'\]\['kernel'\] holds NaN or inf"):
        checkpoint.load(path, template)


def test_truncated_file_fails_the_hash(saved):
    path, _, template = saved
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match=r"m\.msgpack: sha256 .* does not match the metadata"):
        checkpoint.load(path, template)


def test_corrupted_bytes_with_matching_hash_fail_decoding(saved):
    path, _, template = saved
    path.write_bytes(b"\xc1\xc1 not msgpack")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["sha256"] = checkpoint.sha256_file(path)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"m\.msgpack: not a valid msgpack checkpoint"):
        checkpoint.load(path, template)


def _resave(path, variables):
    meta = json.loads(path.with_suffix(".json").read_text())
    checkpoint.save(path, variables, {k: v for k, v in meta.items() if k not in ("sha256", "file")})


@pytest.mark.parametrize(
    "damage, match",
    [
        (
            lambda v: v["params"]["dense"].update(kernel=np.zeros((3, 2), np.float32)),
            r"\['kernel'\] has shape \(3, 2\), expected \(2, 3\)",
        ),
        (
            lambda v: v["params"]["dense"].update(bias=np.ones(3, np.float64)),
            r"\['bias'\] has dtype float64, expected float32",
        ),
        (lambda v: v["params"]["dense"].pop("bias"), r"missing array .*\['bias'\] \(expected shape \(3,\)\)"),
        (lambda v: v["params"].update(extra={"w": np.ones(1, np.float32)}), r"unexpected array .*\['extra'\]"),
    ],
)
def test_mismatched_checkpoint_names_the_first_mismatch(saved, damage, match):
    path, variables, template = saved
    damage(variables)
    _resave(path, variables)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load(path, template)


def test_missing_files(tmp_path, saved):
    _, _, template = saved
    with pytest.raises(CheckpointError, match="metadata file not found"):
        checkpoint.load(tmp_path / "nope.msgpack", template)


def test_save_is_atomic_and_leaves_no_temp_files(saved):
    path, variables, _ = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json", "m.msgpack"]


def test_no_pickle_in_the_code_base():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for d in ("explain", "models", "dashboard")
        for p in (root / d).rglob("*.py")
        if "import pickle" in p.read_text() or "allow_pickle=True" in p.read_text()
    ]
    assert offenders == []
    assert jnp is not None


def test_shipped_checkpoint_with_a_flipped_byte_fails_naming_the_file(tmp_path):
    import re
    import shutil

    from models import registry

    src = registry.SPECS["breast_cancer_mlp"].checkpoint_path
    path = tmp_path / src.name
    shutil.copyfile(src, path)
    shutil.copyfile(src.with_suffix(".json"), path.with_suffix(".json"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ": sha256 .* does not match the metadata"):
        registry.load("breast_cancer_mlp", checkpoint_path=path)
