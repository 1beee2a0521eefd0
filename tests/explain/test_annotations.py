"""Every public function's jaxtyping annotations hold on valid input (beartype at test time only).

Production calls are not type-checked; here each public function is wrapped in
``jaxtyping.jaxtyped(typechecker=beartype)`` and called on valid input, so an
annotation that disagrees with what the function takes or returns fails.
"""

import jax
import numpy as np
import pytest
from beartype import beartype
from jaxtyping import jaxtyped

import explain
from explain.saliency import registry


def checked(fn):
    return jaxtyped(typechecker=beartype)(fn)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(size=(3, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(registry.METHODS))
def test_registry_methods_match_their_annotations(linen_cnn, images, name):
    info = registry.get(name)
    kwargs = {"target": 1}
    if info.accepts_key:
        kwargs["key"] = jax.random.key(0)
    if info.needs_references:
        kwargs["references"] = images
    small = {"steps": 4, "n_samples": 3, "max_steps": 8, "start_steps": 4}
    options = {k: v for k, v in small.items() if k in info.defaults}
    a = checked(info.fn)(linen_cnn, images, **kwargs, **options)
    assert a.values.shape[0] == images.shape[0]


def test_gradient_primitives_match_their_annotations(linen_cnn, images):
    checked(explain.input_gradients)(linen_cnn, images, target=0)
    checked(explain.layer_gradients)(linen_cnn, images, layer=linen_cnn.layer_names[0], target=0)
    checked(explain.hvp)(linen_cnn, images, v=images, target=0)
    p = checked(explain.prepare)(linen_cnn, images)
    checked(explain.gradients.target_and_grad)(linen_cnn.apply, linen_cnn.params, jax.numpy.asarray(p.x), p.target)
