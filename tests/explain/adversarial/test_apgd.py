"""APGD / APGD-T: the checkpoint schedule, the step-size rule, constraints (hypothesis), core = loop, chunking, errors."""

from __future__ import annotations

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attack_testlib import cached_linear, ce, linear_model
from hypothesis import given, settings
from hypothesis import strategies as st

from explain.adversarial import AttackConfig, apgd
from explain.adversarial import attacks as A

apgd_lib = importlib.import_module("explain.adversarial.apgd")  # the module: the package exports the function apgd


def test_checkpoints_follow_autoattack_schedule():
    # p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) with p_1 = 0.22, in whole iterations
    assert apgd_lib.checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_lib.checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert apgd_lib.checkpoints(1) == [1]


def _state(n=4, d=3):
    z = jnp.zeros((n, d))
    return apgd_lib.APGDState(
        x_cur=z, x_prev=z, g=z, j=jnp.zeros(n), x_max=jnp.ones((n, d)), g_max=2 * jnp.ones((n, d)),
        j_max=jnp.array([2.0, 2.0, 1.0, 1.0]), eta=jnp.ones(n), rises=jnp.array([10, 5, 10, 10]),
        j_max_ckpt=jnp.array([1.0, 1.0, 1.0, 1.0]), halved=jnp.array([False, False, False, True]), kept=None,
    )  # fmt: skip


def test_checkpoint_halves_the_step_and_restarts_from_the_best_point_exactly_under_the_two_conditions():
    s = apgd_lib.apgd_checkpoint(_state(), jnp.asarray(10))
    # row 0: rose on every step and improved -> keep; row 1: rose on 5 of 10 <= 75% -> cut (condition 1);
    # row 2: not halved last time and no improvement -> cut (condition 2); row 3: halved last time -> keep
    np.testing.assert_array_equal(s.eta, [1.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(s.halved, [False, True, True, False])
    np.testing.assert_array_equal(s.x_cur[:, 0], [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(s.g[:, 0], [0.0, 2.0, 2.0, 0.0])
    np.testing.assert_array_equal(s.rises, 0)
    np.testing.assert_array_equal(s.j_max_ckpt, s.j_max)


shapes = st.sampled_from([(4,), (3, 3, 2)])
norms = st.sampled_from(["linf", "l2"])


@settings(max_examples=12, deadline=None)
@given(shape=shapes, eps=st.floats(0.0, 0.6), steps=st.integers(1, 6), norm=norms, seed=st.integers(0, 2**16))
def test_apgd_stays_in_ball_and_range_and_never_below_clean_loss(shape, eps, steps, norm, seed):
    model = cached_linear(shape)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(3, *shape)).astype(np.float32)
    x[:, ..., 0] = rng.choice([0.0, 1.0], size=x[:, ..., 0].shape)  # pixels on the range's edges
    r = apgd(model, x, eps=eps, key=jax.random.key(seed), steps=steps, norm=norm)
    delta = np.asarray(r.x_adv, np.float64) - x
    assert np.all(A.perturbation_norm(jnp.asarray(delta), norm) <= eps + 1e-6)
    assert r.x_adv.min() >= 0.0 and r.x_adv.max() <= 1.0
    labels = np.asarray(jnp.argmax(r.outputs_clean, 1))
    assert np.all(ce(model, np.asarray(r.x_adv), labels) >= ce(model, x, labels) - 1e-5)
    assert len(r.objective_trace) == steps + 1


def test_core_under_jit_equals_the_compiled_loop():
    m = linear_model((3, 3, 2), k=4)
    x = jax.random.uniform(jax.random.key(1), (3, 3, 3, 2))
    y = jnp.argmax(m.apply(m.params, x), 1)
    cfg = AttackConfig("apgd", steps=7, loss="dlr")
    key = jax.random.key(2)
    obj = A.objective(labels=y, loss="dlr")
    core = jax.jit(apgd_lib.apgd_core, static_argnums=0, static_argnames=("config", "value_range"))
    a = core(m.apply, m.params, x, obj, labels=y, eps=0.05, config=cfg, value_range=(0.0, 1.0),
             key=jax.random.fold_in(key, 0))  # fmt: skip
    b = apgd_lib.apgd_loop(m.apply, m.params, x, obj, labels=y, eps=jnp.full((3,), 0.05), config=cfg,
                           value_range=(0.0, 1.0), key=key)  # fmt: skip
    np.testing.assert_allclose(a.x_adv, b.x_adv, atol=1e-6)
    np.testing.assert_allclose(a.trace, b.trace, rtol=1e-5, atol=1e-6)


def test_results_do_not_depend_on_chunking():
    five = linear_model((3, 3, 2), k=5)
    x = np.random.default_rng(0).uniform(0, 1, (5, 3, 3, 2)).astype(np.float32)
    for loss in ("ce", "dlr_targeted"):
        kw = dict(eps=0.03, key=jax.random.key(0), steps=6, loss=loss, target_classes=3)
        whole, chunked = apgd(five, x, **kw), apgd(five, x, **kw, memory_budget=1)  # one row per call
        np.testing.assert_array_equal(whole.x_adv, chunked.x_adv)
        np.testing.assert_array_equal(whole.success, chunked.success)


def test_apgd_t_attacks_the_top_classes_and_succeeds_where_a_linear_model_allows():
    m = linear_model((4,), k=5, value_range=None, scale=1.0)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    r = apgd(m, x, eps=10.0, key=jax.random.key(0), steps=20, loss="dlr_targeted", target_classes=9)
    # a linear model with a huge budget can always be moved to another class
    assert bool(np.all(r.success))
    # APGD-T with one target per class beyond K-1 is clipped to the K-1 others: same result
    r4 = apgd(m, x, eps=10.0, key=jax.random.key(0), steps=20, loss="dlr_targeted", target_classes=4)
    np.testing.assert_array_equal(r.x_adv, r4.x_adv)


def test_bad_input_raises_before_compiling(linen_cnn):
    x = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        apgd(linen_cnn, x, eps=0.1, key=jax.random.key(0), loss="hinge")
    with pytest.raises(ValueError, match="expected eps >= 0"):
        apgd(linen_cnn, x, eps=-0.1, key=jax.random.key(0))
    three = linear_model((4,), k=3)
    with pytest.raises(ValueError, match="loss 'dlr_targeted' needs at least 4 classes"):
        apgd(three, np.zeros((2, 4), np.float32), eps=0.1, key=jax.random.key(0), loss="dlr_targeted")
    with pytest.raises(ValueError, match="picks its own goals"):
        apgd(linear_model((4,), k=5), x[:, 0, 0, :1].repeat(4, 1), eps=0.1, key=jax.random.key(0),
             loss="dlr_targeted", goal=1)  # fmt: skip
    with pytest.raises(ValueError, match="needs kind='apgd'"):
        AttackConfig("pgd", loss="dlr_targeted")
    reg = dataclasses.replace(linen_cnn, output_kind="regression")
    with pytest.raises(ValueError, match="regression model"):
        apgd(reg, x, eps=0.1, key=jax.random.key(0))
