"""Every method through the registry: shape, dtype, compiled once per shape, key determinism, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images

import explain.saliency as saliency
from explain.saliency import registry
from explain.saliency.attribution import Attribution

FAST = {  # small loop counts: these tests check plumbing, the maths is checked per file
    "smoothgrad": {"n_samples": 3},
    "smoothgrad_sq": {"n_samples": 3},
    "vargrad": {"n_samples": 3},
    "integrated_gradients": {"steps": 4},
    "integrated_gradients_adaptive": {"start_steps": 2, "max_steps": 4},
    "expected_gradients": {"n_samples": 3},
    "blur_ig": {"steps": 4, "max_sigma": 2.0},
    "guided_ig": {"steps": 3},
}


def test_public_names_exist():
    for name in saliency.__all__:
        assert hasattr(saliency, name)


@pytest.mark.parametrize("name", list(registry.METHODS))
def test_every_method_shape_dtype_compiled_once_and_deterministic(linen_cnn, name):
    x = images(2)
    info = registry.get(name)

    def run(k):
        return registry.run(
            name, linen_cnn, x, target=1, key=jax.random.key(k), references=images(3, 1), **FAST.get(name, {})
        )

    a = run(0)
    assert isinstance(a, Attribution) and a.values.shape == x.shape and a.values.dtype == x.dtype
    assert np.isfinite(np.asarray(a.values)).all()
    with CompileCounter() as c:
        b = run(0)
    assert c.count == 0, f"{name} recompiled on a second call with the same shapes"
    np.testing.assert_array_equal(a.values, b.values)
    if info.needs_key:
        assert not np.allclose(a.values, run(1).values)
    assert jax.jit(lambda t: t)(a).method == a.method  # Attribution is a pytree with static metadata


def test_unknown_method_and_option():
    with pytest.raises(ValueError, match=r"unknown saliency method 'lime'; expected one of \["):
        registry.get("lime")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stepz'\] for 'integrated_gradients'"):
        registry.run("integrated_gradients", None, None, stepz=3)


def test_optional_key_and_baseline_options_reach_integrated_gradients(linen_cnn):
    x = images(2)
    run = lambda k, **o: registry.run("integrated_gradients", linen_cnn, x, target=1, key=k, steps=2, **o).values  # noqa: E731
    u0, u1 = run(jax.random.key(0), baseline="uniform"), run(jax.random.key(1), baseline="uniform")
    assert not np.allclose(u0, u1)
    c = run(None, baseline="constant", baseline_value=0.25)
    np.testing.assert_allclose(
        c, saliency.integrated_gradients(linen_cnn, x, target=1, steps=2, baseline=x * 0 + 0.25).values
    )
