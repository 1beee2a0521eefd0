import json

import jax
import numpy as np
import pytest

import explain
from explain import batch
from explain.batch import INDEX, MANIFEST, attribute_dataset
from explain.batch import run as run_lib

N, BATCH = 10, 4  # three shards, the last one padded from 2 rows to 4
_SHARD = run_lib.attribute_shard  # the real one, wrapped by Flaky


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.0, 1.0, (N, 8, 8, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    return (np.arange(N) % 3).astype(np.int32)


def _files(path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def _shards(n: int) -> list[str]:
    return [f"shard-{i:05d}.npz" for i in range(n)]


class Flaky:
    """``attribute_shard`` (the one call per shard) raising after ``fail_after`` shards: a crash mid-run."""

    def __init__(self, fail_after: int | None = None):
        self.fail_after, self.calls = fail_after, 0

    def __call__(self, *args):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        return _SHARD(*args)


def _flaky(monkeypatch, fail_after: int | None = None) -> Flaky:
    flaky = Flaky(fail_after)
    monkeypatch.setattr(run_lib, "attribute_shard", flaky)
    return flaky


def test_shards_equal_one_direct_call_on_a_memmap(linen_cnn, x, tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=x.dtype, shape=x.shape)
    mm[:] = x
    mm.flush()
    out = tmp_path / "ig"
    run = attribute_dataset(
        linen_cnn, np.load(tmp_path / "x.npy", mmap_mode="r"), method="integrated_gradients",
        out_dir=out, batch_size=BATCH, options={"steps": 8},
    )  # fmt: skip
    direct = explain.integrated_gradients(linen_cnn, x, steps=8)

    assert (run.n_shards, run.completed, run.skipped) == (3, (0, 1, 2), ())
    np.testing.assert_allclose(run.load(), direct.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(run.convergence_delta(), direct.convergence_delta, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(run.steps(), direct.steps)
    assert _files(out) == [INDEX, MANIFEST, *_shards(3)]  # no temp files
    manifest = json.loads((out / MANIFEST).read_text())
    assert [s["rows"] for s in manifest["shards"]] == [4, 4, 2]
    assert manifest["settings"]["method"] == "integrated_gradients"
    assert manifest["settings"]["options"] == {"steps": 8}
    assert (manifest["settings"]["n"], manifest["settings"]["batch_size"]) == (N, BATCH)
    index = run.index().to_pydict()  # one row per example, its IG completeness error and its shard
    assert index["row"] == list(range(N)) and index["shard"] == [0] * 4 + [1] * 4 + [2] * 2
    np.testing.assert_allclose(index["convergence_delta"], run.convergence_delta(), rtol=1e-6)
    np.testing.assert_allclose(index["l1"], np.abs(run.load()).reshape(N, -1).sum(1), rtol=1e-5)
    assert index["id"][3] == "row 3" and set(index["status"]) == {"ok"}


def test_callable_method_slices_per_sample_targets(linen_cnn, x, y, tmp_path):
    run = attribute_dataset(linen_cnn, x, method=explain.vanilla_gradient, out_dir=tmp_path, batch_size=BATCH, target=y)
    direct = explain.vanilla_gradient(linen_cnn, x, target=y)
    np.testing.assert_allclose(run.load(), direct.values, rtol=1e-6, atol=1e-8)
    assert run.convergence_delta() is None
    # a per-class target really reached each batch: class 0 everywhere gives another map
    assert not np.allclose(run.load(), explain.vanilla_gradient(linen_cnn, x, target=0).values)
    # a Target carrying per-sample classes is sliced too
    prob = explain.targets.class_score(y, "prob")
    run = attribute_dataset(
        linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path / "prob", batch_size=BATCH, target=prob
    )
    np.testing.assert_allclose(
        run.load(), explain.vanilla_gradient(linen_cnn, x, target=prob).values, rtol=1e-5, atol=1e-8
    )


def test_loss_target_with_labels_and_target_all(linen_cnn, x, y, tmp_path):
    loss = attribute_dataset(
        linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path / "loss", batch_size=BATCH, target="loss", labels=y
    )
    np.testing.assert_allclose(
        loss.load(), explain.vanilla_gradient(linen_cnn, x, target="loss", labels=y).values, rtol=1e-6, atol=1e-8
    )
    every = attribute_dataset(
        linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path / "all", batch_size=BATCH, target="all"
    )
    assert every.load().shape == (N, 3, 8, 8, 3)


def test_options_reach_the_method(linen_cnn, x, tmp_path):
    run = attribute_dataset(
        linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path, batch_size=BATCH, options={"absolute": True}
    )
    direct = explain.vanilla_gradient(linen_cnn, x, absolute=True).values
    np.testing.assert_allclose(run.load(), direct, rtol=1e-6, atol=1e-8)
    assert (run.load() >= 0).all() and not np.allclose(direct, explain.vanilla_gradient(linen_cnn, x).values)


def test_resume_after_a_crash_recomputes_only_missing_shards(linen_cnn, x, tmp_path, monkeypatch):
    kw = dict(method="vanilla_gradient", batch_size=BATCH)
    reference = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "ref", **kw).load()
    out = tmp_path / "run"
    _flaky(monkeypatch, fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        attribute_dataset(linen_cnn, x, out_dir=out, **kw)
    assert _files(out) == [MANIFEST, *_shards(2)]  # whole shards and a manifest listing them, nothing else
    assert [s["index"] for s in json.loads((out / MANIFEST).read_text())["shards"]] == [0, 1]

    resumed = _flaky(monkeypatch)
    run = attribute_dataset(linen_cnn, x, out_dir=out, **kw)
    assert (run.completed, run.skipped, resumed.calls) == ((2,), (0, 1), 1)
    np.testing.assert_array_equal(run.load(), reference)
    assert _files(out) == [INDEX, MANIFEST, *_shards(3)]

    _flaky(monkeypatch, fail_after=0)
    again = attribute_dataset(linen_cnn, x, out_dir=out, **kw)
    assert (again.completed, again.skipped) == ((), (0, 1, 2))  # nothing left: the method is never called


def test_resume_skips_only_listed_intact_shards(linen_cnn, x, tmp_path):
    run = attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path, batch_size=BATCH)
    reference = run.load()
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["shards"] = manifest["shards"][:-1]  # the crash came between the shard and the manifest
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "shard-00000.npz").write_bytes(b"truncated")  # a damaged file is never trusted
    run = attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path, batch_size=BATCH)
    assert (run.completed, run.skipped) == ((0, 2), (1,))
    np.testing.assert_array_equal(run.load(), reference)


def test_random_method_draws_by_global_row_so_resume_gives_the_same_noise(linen_cnn, x, key, tmp_path):
    kw = dict(method="smoothgrad", batch_size=BATCH, key=key, options={"n_samples": 2})
    full = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "full", **kw).load()
    out = tmp_path / "part"
    attribute_dataset(linen_cnn, x, out_dir=out, **kw)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["shards"] = manifest["shards"][:1]
    (out / MANIFEST).write_text(json.dumps(manifest))
    run = attribute_dataset(linen_cnn, x, out_dir=out, **kw)
    assert run.completed == (1, 2)
    np.testing.assert_array_equal(run.load(), full)
    # row i draws from the key by its global number: the shards are one direct call on the whole array
    direct = explain.smoothgrad(linen_cnn, x, key=key, n_samples=2)
    np.testing.assert_allclose(full, direct.values, rtol=1e-6, atol=1e-8)
    other = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "other", **{**kw, "key": jax.random.key(1)})
    assert not np.allclose(other.load(), full)


@pytest.mark.parametrize(
    "method, extra",
    [("smoothgrad", {"options": {"n_samples": 3}}), ("expected_gradients", {"options": {"n_samples": 3}})],
)
def test_random_methods_do_not_depend_on_batch_size(linen_cnn, x, key, tmp_path, method, extra):
    kw = dict(method=method, key=key, references=x[:4], **extra)
    three = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "3", batch_size=3, **kw)
    eight = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "8", batch_size=8, **kw)
    np.testing.assert_allclose(three.load(), eight.load(), rtol=1e-6, atol=1e-7)
    assert np.abs(three.load()).max() > 0


@pytest.mark.parametrize(
    "change",
    [
        {"options": {"steps": 5}},
        {"batch_size": 5},
        {"method": "vanilla_gradient", "options": {}},
        {"options": {"steps": 4, "rule": "riemann_left"}},
        {"target": 1},
        {"x_shift": 0.5},
        {"values_dtype": "float16"},
        {"compress": True},
    ],
)
def test_other_settings_in_the_same_out_dir_raise(linen_cnn, x, tmp_path, change):
    kw = dict(method="integrated_gradients", batch_size=BATCH, options={"steps": 4})
    attribute_dataset(linen_cnn, x, out_dir=tmp_path, **kw)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    x2 = x * change.pop("x_shift", 1.0)
    with pytest.raises(ValueError, match="different settings .* never mixed"):
        attribute_dataset(linen_cnn, x2, out_dir=tmp_path, **{**kw, **change})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_reference_set_is_part_of_the_settings(linen_cnn, x, key, tmp_path):
    kw = dict(method="gradient_shap", out_dir=tmp_path, batch_size=BATCH, key=key, options={"n_samples": 2})
    run = attribute_dataset(linen_cnn, x, references=x[:3], **kw)
    assert run.load().shape == x.shape
    with pytest.raises(ValueError, match=r"changed: \['references'\]"):
        attribute_dataset(linen_cnn, x, references=x[3:6], **kw)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, r"expected batch_size >= 1, got 0"),
        # wrong types: the library's message, or under the jaxtyping/beartype test hook the annotation's
        ({"batch_size": 2.5}, TypeError, r"expected batch_size to be an int >= 1|parameter 'batch_size'"),
        ({"memory_budget": 0}, ValueError, r"memory_budget"),
        ({"method": "nope"}, ValueError, r"unknown saliency method 'nope'"),
        ({"method": "gradient"}, ValueError, r"unknown saliency method 'gradient'.*'vanilla_gradient'"),
        ({"method": 3}, TypeError, r"expected method to be a method name|parameter 'method'"),
        ({"method": lambda m, x: None}, TypeError, r"expected method to be a method name.*<lambda>"),
        ({"x": np.zeros((N, 8, 8))}, ValueError, r"expected x of shape \(N, 8, 8, 3\).*got shape \(10, 8, 8\)"),
        ({"x": np.zeros((0, 8, 8, 3))}, ValueError, r"N >= 1"),
        ({"x": np.zeros((N, 8, 8, 3), np.uint8)}, TypeError, r"floating dtype"),
        ({"x": np.full((N, 8, 8, 3), np.nan, np.float32)}, ValueError, r"finite values in x \(first batch\)"),
        ({"method": "smoothgrad"}, ValueError, r"'smoothgrad' is random: pass an explicit key"),
        ({"method": explain.smoothgrad}, ValueError, r"'smoothgrad' is random: pass an explicit key"),
        ({"options": {"stepz": 3}}, ValueError, r"unknown option\(s\) \['stepz'\].*expected some of \['baseline'"),
        ({"method": explain.vanilla_gradient, "options": {"stepz": 3}}, ValueError, r"unknown option\(s\) \['stepz'\]"),
        ({"options": {"target": 1}}, ValueError, r"pass \['target'\] as arguments of attribute_dataset"),
        ({"options": {"references": 1}}, ValueError, r"pass \['references'\] as arguments of attribute_dataset"),
        ({"method": "expected_gradients", "key": jax.random.key(0)}, ValueError, r"pass references=array"),
        (
            {"method": "expected_gradients", "key": jax.random.key(0), "references": np.zeros((3, 8, 8))},
            ValueError,
            r"expected references of shape",
        ),
        ({"target": np.zeros(N - 1, np.int32)}, ValueError, r"target with one entry per sample.*got shape \(9,\)"),
        ({"labels": np.zeros(N + 1, np.int32)}, ValueError, r"labels with one entry per sample"),
        ({"model": object()}, TypeError, r"expected an explain.Model"),
        ({"options": {"baseline": object()}}, TypeError, r"expected options\['baseline'\] to be a number"),
    ],
)
def test_bad_inputs_raise_before_anything_is_written(linen_cnn, x, tmp_path, kwargs, error, match):
    kw = dict(model=linen_cnn, x=x, method="integrated_gradients", out_dir=tmp_path / "out", batch_size=BATCH)
    kw.update(kwargs)
    model, data = kw.pop("model"), kw.pop("x")
    with pytest.raises(error, match=match):
        attribute_dataset(model, data, **kw)
    assert not (tmp_path / "out").exists()


def test_a_method_failing_on_its_first_batch_leaves_nothing(linen_cnn, x, tmp_path):
    with pytest.raises(ValueError, match="class index 7 out of range"):
        attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path / "out", batch_size=BATCH, target=7)
    assert not (tmp_path / "out").exists()  # so a corrected rerun is not refused as "different settings"


def test_foreign_shards_without_a_manifest_and_a_file_as_out_dir_raise(linen_cnn, x, tmp_path):
    (tmp_path / "shard-00000.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="holds shards but no manifest.json"):
        attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path, batch_size=BATCH)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="out_dir to be a folder"):
        attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path / "file", batch_size=BATCH)


def test_batch_larger_than_the_dataset_makes_one_unpadded_shard(linen_cnn, x, tmp_path):
    run = attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path, show_progress=True)
    assert (run.n_shards, run.completed) == (1, (0,))
    assert run.load().shape == x.shape
    assert batch.shard_path(tmp_path, 0).exists()


def test_memory_budget_chunks_inside_shards_and_is_not_a_setting(linen_cnn, x, tmp_path):
    kw = dict(method="integrated_gradients", batch_size=BATCH, options={"steps": 4})
    run = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "a", **kw)
    small = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "b", memory_budget=1, **kw)  # one row per call
    np.testing.assert_allclose(small.load(), run.load(), rtol=1e-5, atol=1e-7)
    again = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "a", memory_budget=1, **kw)
    assert (again.completed, again.skipped) == ((), (0, 1, 2))  # same settings: nothing recomputed, nothing refused


def test_one_sample_over_the_budget_goes_through_the_public_method_which_chunks_its_steps(
    linen_cnn, x, tmp_path, monkeypatch
):
    """A core call holds every step of its samples: IG-64 under a budget of a few rows must take the public
    path (which chunks steps too), and give what the direct call gives; within the budget the core serves."""
    budget = 8 * explain.chunking.row_bytes(linen_cnn)  # 8 gradient rows per call, IG-64 needs 64 per sample
    calls = []
    real = run_lib.registry.call
    monkeypatch.setattr(run_lib.registry, "call", lambda *a, **k: calls.append(k["memory_budget"]) or real(*a, **k))
    kw = dict(method="integrated_gradients", batch_size=BATCH, options={"steps": 64})
    run = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "small", memory_budget=budget, **kw)
    assert calls == [budget] * 3  # every shard through the public method, under the run's budget
    assert json.loads((tmp_path / "small" / MANIFEST).read_text())["engine"]["path"] == "public"  # as it ran
    direct = explain.integrated_gradients(linen_cnn, x, steps=64, memory_budget=budget)
    np.testing.assert_allclose(run.load(), direct.values, rtol=1e-5, atol=1e-7)
    calls.clear()
    big = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "big", **kw)
    assert calls == []  # 64 rows per sample fit the default budget: the compiled core serves
    assert json.loads((tmp_path / "big" / MANIFEST).read_text())["engine"]["path"] == "core"
    np.testing.assert_allclose(run.load(), big.load(), rtol=1e-5, atol=1e-7)


HOLD = """
import sys, time
from pathlib import Path
from explain.io import exclusive_folder
with exclusive_folder(sys.argv[1]):
    Path(sys.argv[2]).touch()
    time.sleep(120)
"""


def test_a_second_process_on_the_same_folder_is_refused_and_a_killed_one_frees_it(linen_cnn, x, tmp_path):
    """Two runs on one out_dir never interleave; a run killed with SIGKILL never blocks its own resume."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    out, ready = tmp_path / "ig", tmp_path / "ready"
    root = Path(explain.__file__).resolve().parents[1]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(ready)], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder did not start"
            time.sleep(0.05)
        with pytest.raises(explain.io.FolderBusyError, match="is being written by another run"):
            attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=out, batch_size=BATCH)
        assert _files(out) == []
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    run = attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=out, batch_size=BATCH)
    assert run.load().shape == x.shape


CRASHING_RUN = """
import sys, time
import numpy as np
import explain
from explain.batch import run as run_lib

real = run_lib.attribute_shard

def slow(*args):  # slow enough that the test can kill the run halfway
    time.sleep(0.3)
    return real(*args)

run_lib.attribute_shard = slow
x = np.load(sys.argv[2])
explain.attribute_dataset("digits_cnn", x, method="smoothgrad", out_dir=sys.argv[1], batch_size=4,
                          key=explain.batch.run.jax.random.key(0), options={"n_samples": 4})
"""


def _listed(out) -> int:
    """Shards the manifest lists (0 before it exists); it is replaced atomically, so never read half-written."""
    return len(json.loads((out / MANIFEST).read_text())["shards"]) if (out / MANIFEST).exists() else 0


def test_a_run_killed_halfway_resumes_to_the_same_bits_as_an_uninterrupted_one(tmp_path):
    """SIGKILL mid-run (no cleanup of any kind), then the same call again: every array equal to 0 ulp."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    x = np.asarray(explain.specs.resolve("digits_cnn").dataset.test.x[:40])
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "killed"
    root = Path(explain.__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(out), str(tmp_path / "x.npy")], cwd=root)
    try:
        deadline = time.monotonic() + 120
        while _listed(out) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert 3 <= _listed(out) < 10  # killed halfway
    kw = dict(method="smoothgrad", batch_size=4, key=jax.random.key(0), options={"n_samples": 4})
    resumed = attribute_dataset("digits_cnn", x, out_dir=out, **kw)
    assert len(resumed.skipped) >= 3  # the shards written before the kill were kept, not recomputed
    whole = attribute_dataset("digits_cnn", x, out_dir=tmp_path / "whole", **kw)
    np.testing.assert_array_equal(resumed.load(), whole.load())
    for i in range(10):
        with np.load(batch.shard_path(out, i)) as a, np.load(batch.shard_path(tmp_path / "whole", i)) as b:
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                np.testing.assert_array_equal(a[name], b[name])


def test_float16_values_are_the_float32_ones_cast_and_stats_come_before_the_cast(linen_cnn, x, tmp_path):
    kw = dict(method="integrated_gradients", batch_size=BATCH, options={"steps": 4})
    full = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "32", **kw)
    half = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "16", values_dtype="float16", **kw)
    assert half.load().dtype == np.float16
    np.testing.assert_array_equal(half.load(), full.load().astype(np.float16))
    np.testing.assert_array_equal(half.convergence_delta(), full.convergence_delta())  # only values are cast
    assert half.index().to_pydict() == full.index().to_pydict()  # max |a|, L1 from the float32 values
    assert json.loads((tmp_path / "16" / MANIFEST).read_text())["settings"]["values_dtype"] == "float16"
    with pytest.raises(ValueError, match=r"expected values_dtype to be one of \['float32', 'float16'\]"):
        attribute_dataset(linen_cnn, x, out_dir=tmp_path / "64", values_dtype="float64", **kw)


def test_compressed_shards_load_equal_and_are_deflated(linen_cnn, x, tmp_path):
    import zipfile

    kw = dict(method="vanilla_gradient", batch_size=BATCH)
    plain = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "plain", **kw)
    packed = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "packed", compress=True, **kw)
    np.testing.assert_array_equal(packed.load(), plain.load())
    for i in range(3):
        with zipfile.ZipFile(batch.shard_path(tmp_path / "packed", i)) as z:
            assert {info.compress_type for info in z.infolist()} == {zipfile.ZIP_DEFLATED}
    again = attribute_dataset(linen_cnn, x, out_dir=tmp_path / "packed", compress=True, **kw)
    assert again.skipped == (0, 1, 2)  # compressed shards verify and resume like plain ones
    with pytest.raises(ValueError, match=r"changed: \['compress', 'values_dtype'\]"):
        attribute_dataset(linen_cnn, x, out_dir=tmp_path / "packed", values_dtype="float16", **kw)


class SlowSource(batch.sources.ArraySource):
    """An array read with a delay, as a slow disk or decoder."""

    def read(self, start, stop):
        import time

        time.sleep(0.2)
        return super().read(start, stop)


def test_seconds_say_where_the_time_went(linen_cnn, x, tmp_path):
    run = attribute_dataset(linen_cnn, SlowSource(x), method="vanilla_gradient", out_dir=tmp_path, batch_size=BATCH)
    s = run.seconds
    assert set(s) == {"total", "wait", "compute", "write"} and min(s.values()) >= 0
    assert s["wait"] >= 0.2  # the first shard's read is never hidden behind a computation
    assert s["total"] >= s["wait"] + s["compute"] + s["write"] and s["compute"] > 0
    assert 0 < run.wait_share < 1
    again = attribute_dataset(linen_cnn, x, method="vanilla_gradient", out_dir=tmp_path / "x", batch_size=BATCH)
    assert again.seconds["total"] > 0


NO_RAY = """
import sys
import numpy as np
import explain.batch
from explain.batch import attribute_dataset
x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32)
run = attribute_dataset("digits_cnn", x, method="vanilla_gradient", out_dir=sys.argv[1], batch_size=2)
assert run.load().shape == (3, 8, 8, 1)
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""


def test_the_local_engine_never_imports_ray(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(explain.__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", NO_RAY, str(tmp_path / "out")], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
