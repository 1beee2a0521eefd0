"""Square Attack: its schedule, windows and bumps, constraints (hypothesis), no gradients needed, chunking, errors."""

from __future__ import annotations

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attack_testlib import cached_linear, linear_model
from hypothesis import given, settings
from hypothesis import strategies as st

import explain
from explain.adversarial import attacks as A
from explain.adversarial import pgd, square

sq = importlib.import_module("explain.adversarial.square")  # the module: the package exports the function square


def test_window_fraction_halves_on_autoattacks_schedule_rescaled_to_the_budget():
    # thresholds 10, 50, 200, ... of 10,000 queries; with 1,000 queries they are 1, 5, 20, ...
    assert sq.window_fraction(0, 1000, 0.8) == 0.8
    assert sq.window_fraction(1, 1000, 0.8) == 0.8
    assert sq.window_fraction(2, 1000, 0.8) == 0.4
    assert sq.window_fraction(6, 1000, 0.8) == 0.2
    assert sq.window_fraction(999, 1000, 0.8) == 0.8 / 512


def test_side_and_image_layout():
    assert sq.as_image((64, 64, 3)) == (64, 64, 3)
    assert sq.as_image((8, 9)) == (8, 9, 1)
    assert sq.as_image((10,)) == (1, 10, 1)
    assert sq.side(0.8, (64, 64, 3)) == 57  # round(sqrt(0.8 * 4096))
    assert sq.side(1e-6, (64, 64, 3)) == 1
    assert sq.side(0.5, (1, 10, 1)) == 2  # a strip of a 1xD input: round(sqrt(5))
    with pytest.raises(ValueError, match="Square needs inputs of shape"):
        sq.as_image((2, 2, 2, 2))


def test_window_mask_is_one_square_inside_the_image():
    for s in (1, 3, 5):
        m = np.asarray(sq._window(jax.random.key(s), (5, 7, 2), jnp.asarray(s)))[:, :, 0]
        rows, cols = np.nonzero(m)
        assert m.sum() == s * s and rows.max() - rows.min() == s - 1 and cols.max() - cols.min() == s - 1


def test_bump_has_unit_norm_peaks_in_the_middle_and_stays_in_its_window():
    b = np.asarray(sq.bump((9, 9, 1), jnp.asarray(5)))[:, :, 0]
    np.testing.assert_allclose(np.sqrt((b * b).sum()), 1.0, rtol=1e-5)
    assert b[5:].sum() == 0 and b[:, 5:].sum() == 0
    assert b[2, 2] == b[:5, :5].max() and b[0, 0] == b[:5, :5].min() > 0


shapes = st.sampled_from([(6,), (4, 4, 2)])


@settings(max_examples=6, deadline=None)
@given(shape=shapes, eps=st.floats(0.0, 0.5), norm=st.sampled_from(["linf", "l2"]), seed=st.integers(0, 2**16))
def test_square_stays_in_ball_and_range_and_never_below_clean_objective(shape, eps, norm, seed):
    model = cached_linear(shape)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(3, *shape)).astype(np.float32)
    x[:, ..., 0] = rng.choice([0.0, 1.0], size=x[:, ..., 0].shape)
    r = square(model, x, eps=eps, key=jax.random.key(seed), queries=20, norm=norm)
    delta = jnp.asarray(np.asarray(r.x_adv, np.float64) - x)
    assert np.all(A.perturbation_norm(delta, norm) <= eps + 1e-6)
    assert r.x_adv.min() >= 0.0 and r.x_adv.max() <= 1.0
    y = jnp.argmax(r.outputs_clean, 1)
    margin = lambda o: np.asarray(explain.targets.cw_margin(jnp.asarray(o), y))  # noqa: E731
    assert np.all(margin(r.outputs_adv) >= margin(r.outputs_clean) - 1e-6)


def test_linf_square_sets_every_coordinate_to_plus_or_minus_eps_inside_the_range():
    m = linear_model((4, 4, 3), k=4, value_range=(0.0, 1.0))
    x = np.full((4, 4, 4, 3), 0.5, np.float32)  # in the middle of the range: nothing is clipped
    r = square(m, x, eps=0.1, key=jax.random.key(0), queries=30)
    moved = ~np.all(np.asarray(r.x_adv) == x, axis=(1, 2, 3))  # examples whose start J beat the clean J
    assert moved.any()
    np.testing.assert_allclose(np.abs(np.asarray(r.x_adv)[moved] - 0.5), 0.1, atol=1e-6)


def _quantised(model: explain.Model, levels: int = 8) -> explain.Model:
    """The model on inputs rounded to ``levels`` grey levels: every input gradient is exactly 0."""

    def apply(p, x):
        return model.apply(p, jnp.round(x * (levels - 1)) / (levels - 1))

    return dataclasses.replace(model, apply=apply, name=model.name + "_quantised")


def test_square_breaks_a_model_whose_gradients_are_masked_where_pgd_cannot():
    m = _quantised(linear_model((6, 6, 1), k=4, scale=8.0))
    x = np.random.default_rng(0).uniform(0, 1, (16, 6, 6, 1)).astype(np.float32)
    p = pgd(m, x, eps=0.3, key=jax.random.key(0), steps=10)
    s = square(m, x, eps=0.3, key=jax.random.key(0), queries=300)
    # zero gradients: PGD moves only by its random start
    assert float(np.mean(s.success)) >= float(np.mean(p.success)) + 0.4, (np.mean(p.success), np.mean(s.success))


def test_results_do_not_depend_on_chunking_and_stop_early_changes_nothing():
    m = linear_model((4, 4, 2), k=4)
    x = np.random.default_rng(1).uniform(0, 1, (5, 4, 4, 2)).astype(np.float32)
    kw = dict(eps=0.05, key=jax.random.key(3), queries=60)
    whole, rows = square(m, x, **kw), square(m, x, **kw, memory_budget=1)
    np.testing.assert_array_equal(whole.x_adv, rows.x_adv)
    np.testing.assert_array_equal(whole.success, rows.success)


def test_bad_input_raises_before_compiling(linen_cnn):
    x = np.zeros((2, 8, 8, 3), np.float32)
    reg = dataclasses.replace(linen_cnn, output_kind="regression")
    with pytest.raises(ValueError, match="regression model"):
        square(reg, x, eps=0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="expected eps >= 0"):
        square(linen_cnn, x, eps=-1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="p_init"):
        square(linen_cnn, x, eps=0.1, key=jax.random.key(0), p_init=0.0)
    with pytest.raises(ValueError, match="needs an explicit key"):
        square(linen_cnn, x, eps=0.1, key=None)
