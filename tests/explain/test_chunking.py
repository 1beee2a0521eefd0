"""The one batching policy: chunk sizes from one budget, padding that never recompiles, host results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import CompileCounter

from explain import chunking


def test_one_budget_constant_and_its_override(linen_cnn):
    row = chunking.row_bytes(linen_cnn)
    assert chunking.rows_per_chunk(linen_cnn) == chunking.MEMORY_BUDGET // row
    assert chunking.rows_per_chunk(linen_cnn, memory_budget=5 * row) == 5
    assert chunking.rows_per_chunk(linen_cnn, memory_budget=5 * row, factor=3) == 1
    assert chunking.rows_per_chunk(linen_cnn, memory_budget=1) == 1
    with pytest.raises(ValueError, match=r"memory_budget \(bytes\) >= 1, got 0"):
        chunking.check_budget(0)
    with pytest.raises(TypeError, match=r"memory_budget \(bytes\) to be an int"):
        chunking.check_budget(1e6)


@pytest.mark.parametrize("n, rows, draws, expected", [(100, 10, 50, (10, 1)), (4, 40, 50, (4, 10)), (4, 40, 3, (4, 3))])
def test_plan_splits_samples_first(n, rows, draws, expected):
    assert chunking.plan(n, rows, draws) == expected


def test_map_rows_pads_slices_pytrees_and_returns_host_arrays():
    x = np.arange(10.0, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    aux = {"a": np.arange(10)}
    f = jax.jit(lambda x, aux: (x.sum(axis=1), aux["a"] * 2))
    chunking.map_rows(f, x[:4], {"a": aux["a"][:4]}, batch=4)  # compile the chunk shape once
    with CompileCounter() as c:
        s, a = chunking.map_rows(f, x, aux, batch=4)
    assert c.count == 0  # 4 + 4 + (2 padded to 4): the same shape every time
    assert isinstance(s, np.ndarray) and s.shape == (10,)
    np.testing.assert_allclose(s, 3 * np.arange(10.0))
    np.testing.assert_array_equal(a, 2 * np.arange(10))


@pytest.mark.parametrize("n, batch, size", [(130, 88, 65), (128, 88, 64), (88, 88, 88), (89, 88, 45), (3, 88, 3)])
def test_chunks_are_balanced_so_padding_is_under_one_row_per_chunk(n, batch, size):
    seen = []
    out = chunking.map_rows(lambda x: (seen.append(x.shape[0]), x * 2)[1], np.arange(n, dtype=np.float32), batch=batch)
    assert set(seen) == {size} and len(seen) * size - n < len(seen)
    np.testing.assert_array_equal(out, 2 * np.arange(n, dtype=np.float32))


def test_map_rows_sums_draw_chunks_with_zero_weight_padding():
    x = np.ones((5, 2), np.float32)
    draws = np.arange(1.0, 8.0, dtype=np.float32)  # 7 draws in chunks of 3: the last padded with zero weight
    f = jax.jit(lambda x, d, w: x * jnp.sum(d * w))
    out = chunking.map_rows(f, x, batch=2, draws=draws, per_call=3)
    np.testing.assert_allclose(out, np.full((5, 2), draws.sum()))


def test_accumulate_equals_one_sum():
    items = jnp.arange(11.0)
    total = chunking.accumulate(lambda d, w: jnp.sum(d * w), items, 4)
    assert float(total) == float(items.sum())


def test_accumulate_runs_one_chunk_at_a_time():
    """Each chunk's result is ready before the next chunk is dispatched, so one chunk's working set is live at
    a time (the budget bounds a call; calls dispatched freely run at once on XLA:CPU)."""
    m = jnp.eye(512) * 0.5
    heavy = jax.jit(lambda d, w, m: jnp.sum(jax.lax.fori_loop(0, 40, lambda _, a: a @ m, m * jnp.sum(d * w))))
    previous, ready = [], []

    def fn(d, w):
        ready.extend(p.is_ready() for p in previous[-1:])
        previous.append(heavy(d, w, m))
        return previous[-1]

    chunking.accumulate(fn, np.arange(12.0, dtype=np.float32), 2)
    assert ready == [True] * 5


def test_progress_is_off_by_default_in_library_calls(capsys):
    chunking.map_rows(jax.jit(lambda x: x), np.ones((3, 1), np.float32), batch=1)
    assert capsys.readouterr().err == ""


def test_no_other_budget_or_batch_constant_in_the_library():
    import re
    from pathlib import Path

    import explain

    root = Path(explain.__file__).parent
    pattern = re.compile(r"^_?[A-Z_]*(BUDGET|BATCH|CHUNK)[A-Z_]*\s*=", re.M)
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "chunking.py" and pattern.search(p.read_text())
    ]
    assert offenders == []
