"""Every method through the registry: names, shape, dtype, compiled once per shape, key determinism, errors."""

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
    "gradient_shap": {"n_samples": 3},
    "blur_integrated_gradients": {"steps": 4, "max_sigma": 2.0},
    "guided_integrated_gradients": {"steps": 3},
}


def test_public_names_exist():
    for name in saliency.__all__:
        assert hasattr(saliency, name)


def test_names_are_function_names_and_public():
    for name, info in registry.METHODS.items():
        assert info.fn.__name__ == name
        assert name in saliency.__all__ and getattr(saliency, name) is info.fn
    assert "gradient_abs" not in registry.METHODS  # vanilla_gradient(absolute=True)


def test_fast_options_are_real_options():
    # A renamed option must fail here rather than silently run the slow defaults.
    for name, options in FAST.items():
        assert set(options) <= set(registry.get(name).defaults), name


@pytest.mark.parametrize("name", list(registry.METHODS))
def test_every_method_shape_dtype_compiled_once_and_deterministic(linen_cnn, name):
    x = images(2)
    info = registry.get(name)

    def run(k):
        return registry.call(
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


def test_absolute_option_replaces_gradient_abs(linen_cnn):
    x = images(2)
    signed = registry.call("vanilla_gradient", linen_cnn, x, target=1).values
    absolute = registry.call("vanilla_gradient", linen_cnn, x, target=1, absolute=True).values
    np.testing.assert_array_equal(absolute, np.abs(signed))
    assert registry.get("vanilla_gradient").defaults == {"absolute": False}


def test_unknown_method_and_option():
    with pytest.raises(ValueError, match=r"unknown saliency method 'lime'; expected one of \["):
        registry.get("lime")
    with pytest.raises(ValueError, match=r"unknown saliency method 'gradient_abs'"):
        registry.call("gradient_abs", None, None)
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) \['stepz'\] for 'integrated_gradients'; expected some of \[.*'steps'"
    ):
        registry.call("integrated_gradients", None, None, stepz=3)


def test_optional_key_and_baseline_options_reach_integrated_gradients(linen_cnn):
    x = images(2)

    def run(k, **o):
        return registry.call("integrated_gradients", linen_cnn, x, target=1, key=k, steps=2, **o).values

    u0, u1 = run(jax.random.key(0), baseline="uniform"), run(jax.random.key(1), baseline="uniform")
    assert not np.allclose(u0, u1)
    np.testing.assert_array_equal(u0, run(jax.random.key(0), baseline="uniform"))
    c = run(None, baseline="constant", baseline_value=0.25)
    np.testing.assert_allclose(
        c, saliency.integrated_gradients(linen_cnn, x, target=1, steps=2, baseline=x * 0 + 0.25).values
    )
    with pytest.raises(ValueError, match=r"baseline='uniform' is random: pass an explicit key"):
        run(None, baseline="uniform")


def test_references_default_to_x_for_methods_that_draw_baselines(linen_cnn):
    x, checked = images(2), []
    for name, info in registry.METHODS.items():
        if info.needs_references:
            checked.append(name)
            key = jax.random.key(0)
            default = registry.call(name, linen_cnn, x, target=1, key=key, **FAST.get(name, {})).values
            given = registry.call(name, linen_cnn, x, target=1, key=key, references=x, **FAST.get(name, {})).values
            np.testing.assert_array_equal(default, given)
    assert "expected_gradients" in checked


def test_usable_lists_what_each_model_can_run_in_registry_order(linen_cnn, nnx_mlp):
    image = registry.usable(linen_cnn)
    assert image == tuple(n for n in registry.METHODS if n in image) and "grad_cam" in image
    tabular = registry.usable(nnx_mlp)  # a tabular model: no image-only methods
    assert "vanilla_gradient" in tabular and "grad_cam" not in tabular and "blur_integrated_gradients" not in tabular
