"""4 forced CPU devices against 1, in a subprocess (the device count is fixed when JAX starts)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    import numpy as np

    sys.path.insert(0, sys.argv[2])
    from testlib import TinyCNN  # noqa: E402

    import explain
    from explain.batch import attribute_dataset

    assert len(jax.devices()) == 4, jax.devices()
    module = TinyCNN()
    variables = module.init(jax.random.key(1), jax.numpy.zeros((1, 8, 8, 3)))
    model = explain.from_linen(module, variables, input_shape=(8, 8, 3), value_range=(0.0, 1.0))
    x = np.random.default_rng(0).uniform(0.0, 1.0, (10, 8, 8, 3)).astype(np.float32)
    out = {}
    methods = (("vanilla_gradient", {}), ("smoothgrad", {"n_samples": 3}), ("expected_gradients", {"n_samples": 3}))
    for method, options in methods:
        refs = x[:4] if method == "expected_gradients" else None
        for n in (1, 4):
            run = attribute_dataset(
                model, x, method=method, options=options, key=jax.random.key(0), out_dir=f"{sys.argv[1]}/{method}{n}",
                batch_size=6, devices=n, memory_budget=1, references=refs,
            )
            out[f"{method}{n}"] = run.load()
    np.savez(f"{sys.argv[1]}/out.npz", **out)
    """
)


def test_four_devices_equal_one(tmp_path):
    tests = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), tests], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    for method in ("vanilla_gradient", "smoothgrad", "expected_gradients"):
        np.testing.assert_allclose(out[f"{method}4"], out[f"{method}1"], rtol=1e-6, atol=1e-7)
        assert np.abs(out[f"{method}1"]).max() > 0
    manifest = (tmp_path / "smoothgrad4" / "manifest.json").read_text()
    assert '"devices": 4' in manifest


def test_more_devices_than_there_are_raise(tmp_path):
    import jax

    from explain.batch.devices import Devices

    with pytest.raises(ValueError, match=r"expected devices <= \d+"):
        Devices.local(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match=r"expected devices >= 1"):
        Devices.local(0)
