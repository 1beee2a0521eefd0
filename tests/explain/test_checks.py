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


def test_memory_budget():
    assert checks.check_memory_budget(None) is None and checks.check_memory_budget(2**20) == 2**20
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"memory_budget \(bytes\) >= 1, got {bad}"):
            checks.check_memory_budget(bad)
    with pytest.raises(TypeError, match=r"memory_budget \(bytes\) to be an int"):
        checks.check_memory_budget(1e6)


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


def test_saliency_common_still_exports_the_moved_checks():
    from explain.saliency import _common

    for name in ("check_int", "check_float", "check_choice", "check_key", "check_optional_int", "check_memory_budget"):
        assert getattr(_common, name) is getattr(checks, name)
