import jax.numpy as jnp
import numpy as np
import pytest

import explain
from explain.model import InputSpec


@pytest.fixture
def spec():
    return InputSpec(shape=(4, 4, 3), value_range=(0.0, 1.0))


def test_validate_accepts_and_keeps_float_dtype(spec):
    x = np.full((2, 4, 4, 3), 0.5, np.float32)
    out = spec.validate(x)
    assert out.shape == (2, 4, 4, 3) and out.dtype == jnp.float32


@pytest.mark.parametrize(
    "shape, match",
    [
        ((4, 4, 3), r"expected x of shape \(N, 4, 4, 3\) in \[0, 1\], got shape \(4, 4, 3\) \(add a batch axis"),
        ((2, 4, 4), r"expected x of shape \(N, 4, 4, 3\).*got shape \(2, 4, 4\)"),
        ((2, 5, 4, 3), r"got shape \(2, 5, 4, 3\)"),
        ((0, 4, 4, 3), r"empty batch"),
    ],
)
def test_validate_rejects_wrong_shape(spec, shape, match):
    with pytest.raises(ValueError, match=match):
        spec.validate(np.zeros(shape, np.float32))


def test_validate_rejects_integer_dtype_with_hint(spec):
    with pytest.raises(TypeError, match=r"floating dtype.*got uint8 \(for 8-bit images divide by 255\)"):
        spec.validate(np.zeros((1, 4, 4, 3), np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_validate_rejects_nonfinite_and_names_the_sample(spec, bad):
    x = np.zeros((3, 4, 4, 3), np.float32)
    x[2, 1, 1, 0] = bad
    with pytest.raises(ValueError, match=r"NaN or inf in 1 sample\(s\), first at index 2"):
        spec.validate(x)


def test_validate_warns_outside_declared_range(spec):
    with pytest.warns(UserWarning, match=r"outside the declared range \[0, 1\]"):
        spec.validate(np.full((1, 4, 4, 3), 1.5, np.float32))


def test_feature_names_must_match_shape():
    with pytest.raises(ValueError, match="feature_names has 2 names but the input shape is"):
        InputSpec(shape=(3,), feature_names=("a", "b"))


def test_as_model_accepts_bundles_and_rejects_others(linen_cnn):
    class Bundle:
        model = linen_cnn

    assert explain.as_model(Bundle()) is linen_cnn
    with pytest.raises(TypeError, match="expected an explain.Model"):
        explain.as_model(object())


def test_num_outputs_is_read_from_the_model(linen_cnn, nnx_mlp):
    assert linen_cnn.num_outputs == 3
    assert nnx_mlp.num_outputs == 3


def test_unknown_output_kind():
    with pytest.raises(ValueError, match="expected output_kind 'classification' or 'regression'"):
        explain.Model(apply=lambda p, x: x, params={}, input_spec=InputSpec((2,)), output_kind="ranking")
