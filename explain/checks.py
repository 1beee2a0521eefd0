"""Generic argument checks shared by every method family, run before anything is compiled.

Each check returns the validated value (normalised to a Python scalar where it
is one) or raises ``TypeError`` (wrong kind) / ``ValueError`` (wrong value)
naming the argument, what was expected and what was given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """An ``int >= minimum`` (``bool`` rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"expected {name} to be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"expected {name} >= {minimum}, got {value}")
    return int(value)


def check_optional_int(name: str, value: Any, *, minimum: int = 1) -> int | None:
    """``None`` or an ``int >= minimum``."""
    return None if value is None else check_int(name, value, minimum=minimum)


def check_float(name: str, value: Any, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    """A finite number in ``[minimum, maximum]`` (``bool`` rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected {name} to be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        hi = "" if maximum is None else f" and <= {maximum:g}"
        raise ValueError(f"expected {name} >= {minimum:g}{hi}, got {value:g}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(choices)}")
    return value


def check_key(key: Any, *, what: str) -> jax.Array:
    """A PRNG key: a typed key (``jax.random.key``) or raw ``uint32 (2,)`` key data (``jax.random.PRNGKey``).

    Any other array (a float, an int seed, a batch of keys) would either fail
    deep inside ``jax.random`` or silently give a different stream, so it is refused here.
    """
    if key is None:
        raise ValueError(f"{what} is random: pass an explicit key=jax.random.key(seed)")
    if not isinstance(key, jax.Array):
        raise TypeError(f"expected key to be a jax.random.key, got {type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"expected a single PRNG key (shape ()), got a key array of shape {key.shape}")
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return key
    raise TypeError(
        f"expected key to be a jax.random.key(seed) or uint32 (2,) key data, got {key.dtype} array of shape {key.shape}"
    )


def check_finite_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a NumPy array with no NaN or inf."""
    arr = np.asarray(value)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"expected a finite {name}, got {bad} NaN/inf value(s) of {arr.size}")
    return arr


def input_dtype(dtype: Any, *, name: str = "x") -> np.dtype:
    """The dtype policy for model inputs, in one place: what is accepted, cast or refused.

    * ``float32``: used as is.
    * ``float64``: used as is when ``jax_enable_x64`` is on (finite-difference
      checks need it); otherwise cast to ``float32``, the dtype JAX computes in,
      as ``jnp.asarray`` would (NumPy's default dtype must not be an error).
    * ``float16`` / ``bfloat16``: refused. Gradients of saturated activations
      underflow in half precision, and a silent upcast would explain a
      different input than the one given; cast to float32 explicitly.
    * integers, booleans, complex: refused (for 8-bit images, divide by 255).

    Returns:
      The dtype the input is computed in.

    Raises:
      TypeError: a refused dtype, naming it and the fix.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return dtype
    if dtype == np.float64:
        return dtype if jax.config.jax_enable_x64 else np.dtype(np.float32)
    if dtype.kind == "f" or dtype.name == "bfloat16":
        raise TypeError(
            f"expected {name} as float32 or float64, got {dtype} (half precision): cast with .astype('float32')"
        )
    hint = " (for 8-bit images divide by 255)" if dtype == np.uint8 else ""
    raise TypeError(f"expected {name} with a floating dtype (float32 or float64), got {dtype}{hint}")
