"""Generic argument checks: accepted values come back normalised, everything else raises naming expected vs got."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explain import checks


def test_int_and_float():
    assert checks.check_int("n", np.int64(3)) == 3 and type(checks.check_int("n", np.int64(3))) is int
    assert checks.check_optional_int("n", None) is None
    with pytest.raises(TypeError, match=r"expected n to be an int >= 1, got bool True"):
        checks.check_int("n", True)
    with pytest.raises(ValueError, match=r"expected n >= 2, got 1"):
        checks.check_int("n", 1, minimum=2)
    assert checks.check_float("a", 1) == 1.0
    with pytest.raises(ValueError, match=r"expected a >= 0 and <= 1, got nan"):
        checks.check_float("a", float("nan"), maximum=1.0)
    with pytest.raises(TypeError, match=r"expected a to be a number, got str"):
        checks.check_float("a", "1")
    with pytest.raises(ValueError, match=r"unknown mode 'x'; expected one of \['a', 'b'\]"):
        checks.check_choice("mode", "x", ("a", "b"))


@pytest.mark.parametrize(
    "dtype, expected",
    [(np.float32, np.float32), (np.float64, np.float32)],
)
def test_input_dtype_policy(dtype, expected):
    assert checks.input_dtype(dtype) == expected


def test_input_dtype_keeps_float64_under_x64():
    with jax.enable_x64(True):
        assert checks.input_dtype(np.float64) == np.float64


@pytest.mark.parametrize(
    "dtype, match",
    [
        (np.float16, r"float32 or float64, got float16 \(half precision\)"),
        (jnp.bfloat16, r"float32 or float64, got bfloat16 \(half precision\)"),
        (np.uint8, r"floating dtype .* got uint8 \(for 8-bit images divide by 255\)"),
        (np.int64, r"floating dtype .* got int64"),
        (np.bool_, r"floating dtype .* got bool"),
    ],
)
def test_input_dtype_refusals_say_how_to_convert(dtype, match):
    with pytest.raises(TypeError, match=match):
        checks.input_dtype(dtype)


def test_key_typed_or_raw_uint32():
    typed, raw = jax.random.key(0), jax.random.PRNGKey(0)
    assert checks.check_key(typed, what="x") is typed and checks.check_key(raw, what="x") is raw
    with pytest.raises(ValueError, match=r"x is random: pass an explicit key"):
        checks.check_key(None, what="x")
    with pytest.raises(TypeError, match=r"expected key to be a jax.random.key, got int"):
        checks.check_key(0, what="x")
    with pytest.raises(TypeError, match=r"got int32 array of shape \(2,\)"):
        checks.check_key(jnp.zeros((2,), jnp.int32), what="x")
    with pytest.raises(ValueError, match=r"single PRNG key \(shape \(\)\), got a key array of shape \(3,\)"):
        checks.check_key(jax.random.split(typed, 3), what="x")


def test_finite_array():
    np.testing.assert_array_equal(checks.check_finite_array("b", [1.0, 2.0]), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"expected a finite b, got 1 NaN/inf value\(s\) of 2"):
        checks.check_finite_array("b", [1.0, np.inf])
