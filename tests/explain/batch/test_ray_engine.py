"""The Ray engine: the same shards as the local engine, a lost worker recovered, clear errors.

One local Ray instance for the module (``ray.init(num_cpus=2)``): starting Ray and its JAX workers is
most of this file's time, so every test that needs workers shares it.
"""

import concurrent.futures
import json
import os
import signal
import socket
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
import ray  # pinned in requirements.txt: a missing Ray fails here instead of skipping

import explain
from explain.__main__ import main
from explain.batch import MANIFEST, attribute_dataset, shard_path

ROWS, BATCH, SHARDS = 32, 4, 8
KW = dict(method="smoothgrad", batch_size=BATCH, key=jax.random.key(0), options={"n_samples": 2})


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.asarray(explain.specs.resolve("digits_cnn").dataset.test.x[:ROWS])


def _same_shards(a, b, n: int) -> None:
    """Every array of every shard equal to 0 ulp (same names, dtypes, bits)."""
    for i in range(n):
        with np.load(shard_path(a, i)) as s, np.load(shard_path(b, i)) as t:
            assert sorted(s.files) == sorted(t.files)
            for name in s.files:
                assert s[name].dtype == t[name].dtype
                np.testing.assert_array_equal(s[name], t[name], err_msg=f"shard {i} {name}")


SLOW_DIGITS = """
import dataclasses, os, time
from pathlib import Path

import jax

import explain


def make():
    # each process that resolves the model leaves its pid here, so the test can kill a worker
    Path({pids!r}, str(os.getpid())).touch()
    model = explain.specs.resolve("digits_cnn").model
    real = model.apply

    def apply(params, x):
        jax.debug.callback(lambda: time.sleep(0.15))  # slow enough to be killed mid-run; the values are unchanged
        return real(params, x)

    return dataclasses.replace(model, apply=apply)
"""


def _listed(out) -> int:
    return len(json.loads((out / MANIFEST).read_text())["shards"]) if (out / MANIFEST).exists() else 0


def test_ray_shards_equal_the_local_engines_even_with_a_worker_killed_mid_run(cluster, x, tmp_path):
    """2 workers, one SIGKILLed after the first shard is listed: Ray Data restarts it and retries its shard,
    and every shard ends byte-identical to the local engine's (keys per global row: the engine does not matter).

    One Ray run serves both checks: starting JAX workers is most of this file's time.
    """
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "slow_digits.py").write_text(textwrap.dedent(SLOW_DIGITS.format(pids=str(pids))))
    spec = f"{tmp_path / 'slow_digits.py'}:make"
    out = tmp_path / "ray"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(attribute_dataset, spec, x, out_dir=out, engine="ray", workers=2, **KW)
        deadline = time.monotonic() + 120
        while _listed(out) < 1:
            assert not running.done(), running.exception()
            assert time.monotonic() < deadline, "the Ray run made no progress"
            time.sleep(0.05)
        workers = sorted(int(p.name) for p in pids.iterdir() if int(p.name) != os.getpid())
        at_kill = _listed(out)
        os.kill(workers[0], signal.SIGKILL)
        run = running.result(timeout=180)
    assert at_kill < SHARDS  # killed mid-run
    assert sorted(run.completed) == list(range(SHARDS)) and run.skipped == ()
    assert len(list(pids.iterdir())) > len(workers) + 1  # a new worker took the killed one's place
    local = attribute_dataset(spec, x, out_dir=tmp_path / "local", **KW)
    _same_shards(out, tmp_path / "local", SHARDS)
    assert run.index().to_pydict() == local.index().to_pydict()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["engine"]["name"] == "ray" and manifest["engine"]["workers"] == 2
    assert manifest["fingerprint"] == json.loads((tmp_path / "local" / MANIFEST).read_text())["fingerprint"]
    assert {"total", "wait", "compute", "write", "stream"} <= set(run.seconds) and run.seconds["compute"] > 0
    # the engine is not a setting: the local engine resumes the Ray run's folder and has nothing left to do
    again = attribute_dataset(spec, x, out_dir=out, **KW)
    assert (again.completed, again.skipped) == ((), tuple(range(SHARDS)))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once closed: nothing listens there


def test_an_address_that_does_not_answer_is_named_and_exits_1(x, tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ValueError, match=f"Ray cluster at '{address}' does not answer"):
        attribute_dataset("digits_cnn", x, out_dir=tmp_path / "a", engine="ray", address=address, **KW)
    assert not (tmp_path / "a").exists()
    np.save(tmp_path / "x.npy", x)
    argv = ["attribute", "--model", "digits_cnn", "--input", str(tmp_path / "x.npy"), "--method", "vanilla_gradient",
            "--out", str(tmp_path / "b"), "--engine", "ray", "--address", address]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: the Ray cluster at" in err and "does not answer" in err


def test_ray_needs_a_spec_string_and_ray_itself(x, tmp_path, monkeypatch):
    model = explain.specs.resolve("digits_cnn").model  # resolved: no spec string for the workers
    with pytest.raises(ValueError, match="resolves the model in each worker from its spec string"):
        attribute_dataset(model, x, out_dir=tmp_path / "a", engine="ray", **KW)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install flax-explain\[ray\]"):
        attribute_dataset("digits_cnn", x, out_dir=tmp_path / "b", engine="ray", **KW)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _job(tmp_path, **change):
    from explain.batch import ray_engine
    from explain.batch.run import Output

    kw = dict(
        spec="digits_cnn", method="vanilla_gradient", options={}, key=None, references=None, memory_budget=None,
        devices=None, target=None, labels=None, n=ROWS, rows=BATCH, classification=True, out_dir=str(tmp_path),
        output=Output(),
    )  # fmt: skip
    return ray_engine.Job(**{**kw, **change})


def test_a_worker_in_process_writes_the_local_shard_and_returns_caller_errors(x, tmp_path):
    """The worker class without Ray: its shard file is the local engine's; a bad target comes back as data."""
    from explain.batch import ray_engine

    np.save(tmp_path / "x.npy", x)
    local = attribute_dataset("digits_cnn", x, method="vanilla_gradient", out_dir=tmp_path / "local", batch_size=BATCH)
    worker = ray_engine.ShardWorker(_job(tmp_path / "w"), ("path", str(tmp_path / "x.npy"), None))
    batch = {"shard": np.array([1]), "start": np.array([4]), "stop": np.array([8])}
    result = json.loads(worker(batch)["result"][0])
    assert result["value_shape"] == [8, 8, 1] and set(result["seconds"]) == {"wait", "compute", "write"}
    manifest = json.loads((tmp_path / "local" / MANIFEST).read_text())
    assert result["entry"] == manifest["shards"][1]  # same file name, rows and sha256
    bad = ray_engine.ShardWorker(_job(tmp_path / "bad", target=12), ("path", str(tmp_path / "x.npy"), None))
    error = json.loads(bad(batch)["result"][0])["error"]
    assert error[0] == "ValueError" and "class index 12 out of range" in error[1]
    assert local.n_shards == SHARDS
