"""Attacks: constraints (hypothesis), FGSM's closed form, PGD keeps the best iterate, CleverHans's known mistakes, errors."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attack_testlib import cached_linear, ce, linear_model
from hypothesis import given, settings
from hypothesis import strategies as st
from testlib import to_float64

import explain
from explain import chunking
from explain.adversarial import attacks as A
from explain.adversarial import bim, fgsm, pgd, sweep
from explain.targets import resolve


def ce_grad(model, x, labels):
    """Closed-form ∂CE/∂x = Wᵀ(softmax − onehot) of the linear model, in float64.

    The label's entry ``p_y − 1`` is computed as ``−Σ_{k≠y} p_k``: on a saturated example
    ``p_y`` rounds to 1 even in float64 and ``p_y − 1`` to 0, and the float32 loss
    (:func:`explain.targets.cross_entropy`) is exact there.
    """
    w, b = (np.asarray(model.params[n], np.float64) for n in ("w", "b"))
    z = x.reshape(len(x), -1) @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    rows = np.arange(len(x))
    p[rows, labels] = 0.0
    p[rows, labels] = -p.sum(1)
    return (p @ w.T).reshape(x.shape)


shapes = st.sampled_from([(4,), (3, 3, 2)])
norms = st.sampled_from(["linf", "l2"])


@settings(max_examples=25, deadline=None)
@given(shape=shapes, eps=st.floats(0.0, 0.6), steps=st.integers(1, 4), norm=norms, seed=st.integers(0, 2**16))
def test_pgd_stays_in_ball_and_range_and_never_below_clean_loss(shape, eps, steps, norm, seed):
    n = 3  # fixed so that hypothesis's examples share compiled shapes (the step count never recompiles)
    model = cached_linear(shape)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, *shape)).astype(np.float32)
    x[:, ..., 0] = rng.choice([0.0, 1.0], size=x[:, ..., 0].shape)  # pixels on the range's edges
    r = pgd(model, x, eps=eps, key=jax.random.key(seed), steps=steps, norm=norm)
    delta = np.asarray(r.x_adv, np.float64) - x
    assert np.all(A.perturbation_norm(jnp.asarray(delta), norm) <= eps + 1e-6)
    assert r.x_adv.min() >= 0.0 and r.x_adv.max() <= 1.0
    labels = np.asarray(jnp.argmax(r.outputs_clean, 1))
    assert np.all(ce(model, np.asarray(r.x_adv), labels) >= ce(model, x, labels) - 1e-5)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, eps=st.floats(0.0, 0.3), norm=norms, seed=st.integers(0, 2**16))
def test_fgsm_in_ball_and_range_and_equals_eps_sign_grad_where_not_clipped(shape, eps, norm, seed):
    n = 3
    model = cached_linear(shape)
    x = np.random.default_rng(seed).uniform(0, 1, size=(n, *shape)).astype(np.float32)
    r = fgsm(model, x, eps=eps, norm=norm)
    labels = np.asarray(jnp.argmax(r.outputs_clean, 1))
    g = ce_grad(model, x.astype(np.float64), labels)
    delta = np.asarray(r.x_adv, np.float64) - x
    assert np.all(np.asarray(r.norms) <= eps + 1e-6)
    assert r.x_adv.min() >= 0.0 and r.x_adv.max() <= 1.0
    free = (np.asarray(r.raw) >= 0) & (np.asarray(r.raw) <= 1)
    if norm == "linf":
        expected = eps * np.sign(g)
    else:
        expected = eps * g / np.linalg.norm(g.reshape(n, -1), axis=1).reshape((n,) + (1,) * len(shape))
    np.testing.assert_allclose(delta[free], expected[free], atol=2e-6)
    np.testing.assert_allclose(np.asarray(r.raw) - x, expected, atol=2e-6)


def test_fgsm_matches_finite_differences_in_float64(linen_cnn):
    with jax.enable_x64(True):
        m = to_float64(linen_cnn)
        x = np.asarray(jax.random.uniform(jax.random.key(3), (2, 8, 8, 3), jnp.float64)) * 0.5 + 0.25
        r = fgsm(m, x, eps=0.01)
        y = np.asarray(jnp.argmax(r.outputs_clean, 1))
        loss = resolve(m, "loss", 2, labels=y)
        for i in range(2):
            from testlib import central_difference

            f = jax.jit(lambda xi, i=i: loss.rows(slice(i, i + 1))(m.apply(m.params, xi[None]))[0])
            gi = central_difference(f, x[i])
            big = np.abs(gi) > 1e-7  # the sign of a vanishing coordinate is noise
            np.testing.assert_array_equal(np.sign(np.asarray(r.x_adv[i]) - x[i])[big], np.sign(gi)[big])


def test_targeted_fgsm_lowers_the_loss_towards_the_target():
    m = linear_model((3, 3, 2), k=4, value_range=None)
    x = np.random.default_rng(1).uniform(0, 1, (6, 3, 3, 2)).astype(np.float32)
    t = np.array([0, 1, 2, 3, 0, 1])
    r = fgsm(m, x, eps=0.05, goal=t)
    g = ce_grad(m, x.astype(np.float64), t)
    np.testing.assert_allclose(np.asarray(r.x_adv) - x, -0.05 * np.sign(g), atol=1e-6)
    assert np.all(ce(m, np.asarray(r.x_adv), t) < ce(m, x, t))


def test_l2_step_is_per_example_and_of_length_alpha():
    # CleverHans mistake: the L2 step normalised over the wrong axes, so examples with
    # small gradients barely moved. Here every example moves exactly α = ε along g/‖g‖.
    m = linear_model((4, 4, 1), k=3, value_range=None)
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 1)).astype(np.float32)
    x[1] *= 40.0  # a saturated example: a gradient whose squares underflow in float32
    y = jnp.argmax(m.apply(m.params, jnp.asarray(x)), 1)
    cfg = A.AttackConfig("pgd", norm="l2", steps=1, rel_step_size=1.0, random_start=False, keep_best=False)
    res = A.pgd_core(m.apply, m.params, jnp.asarray(x), labels=y, eps=0.5, config=cfg)
    y = np.asarray(y)
    delta = np.asarray(res.x_adv) - x
    np.testing.assert_allclose(np.linalg.norm(delta.reshape(3, -1), axis=1), 0.5, rtol=1e-5)
    g = ce_grad(m, x.astype(np.float64), y)
    unit = g.reshape(3, -1) / np.linalg.norm(g.reshape(3, -1), axis=1, keepdims=True)
    np.testing.assert_allclose(delta.reshape(3, -1), 0.5 * unit, atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_inside_ball_and_range(norm):
    # CleverHans mistake: the random start was drawn in the ball but not clipped to the input range.
    x = jnp.concatenate([jnp.zeros((50, 6, 6, 1)), jnp.ones((50, 6, 6, 1))])
    eps = jnp.full((100,), 0.3 if norm == "linf" else 2.0)
    delta = jax.jit(A.random_start, static_argnums=4)(jax.random.key(0), jnp.arange(100), x, eps, norm)
    assert np.all(A.perturbation_norm(delta, norm) <= eps + 1e-6)
    assert np.all(A.perturbation_norm(delta, norm) > 0)
    x0 = A.constrain(x, x + delta, eps, norm, (0.0, 1.0))
    assert x0.min() >= 0 and x0.max() <= 1
    assert np.all(A.perturbation_norm(x0 - x, norm) <= eps + 1e-6)
    if norm == "l2":  # uniform in the d-ball: E‖δ‖ = ε·d/(d+1)
        np.testing.assert_allclose(float(A.perturbation_norm(delta, norm).mean()), 2.0 * 36 / 37, rtol=0.02)


def test_num_classes_read_from_model_not_from_labels():
    # CleverHans mistake: the class count came from the batch's labels.
    m = linear_model((4,), k=5)
    x = np.random.default_rng(0).uniform(0, 1, (4, 4)).astype(np.float32)
    r = fgsm(m, x, eps=0.1, labels=np.array([0, 1, 0, 1]), goal=None)
    assert r.outputs_adv.shape == (4, 5)
    fgsm(m, x, eps=0.1, goal=np.array([4, 4, 4, 4]))  # class 4 exists although no label is 4
    with pytest.raises(ValueError, match="class index 5 out of range; model 'linear5' has 5 classes"):
        fgsm(m, x, eps=0.1, goal=5)


def test_labels_default_to_predictions_and_source_is_stated():
    m = cached_linear((4,))
    x = np.random.default_rng(0).uniform(0, 1, (5, 4)).astype(np.float32)
    s = sweep(m, x, eps=[0.1], config=A.AttackConfig("fgsm"))
    assert s.label_source == "predictions" and not s.targeted and s.goal is None
    np.testing.assert_array_equal(s.labels, jnp.argmax(s.results[0].outputs_clean, 1))
    y = np.array([0, 1, 2, 0, 1])
    assert sweep(m, x, eps=[0.1], config=A.AttackConfig("fgsm"), labels=y).label_source == "labels"
    t = sweep(m, x, eps=[0.1], config=A.AttackConfig("fgsm"), goal=y)
    assert t.targeted and t.label_source == "goal" and t.labels is None
    np.testing.assert_array_equal(t.goal, y)
    host = t.to_numpy()  # the same result with NumPy leaves, static fields kept
    assert isinstance(host.results[0].x_adv, np.ndarray) and isinstance(host.goal, np.ndarray)
    assert host.eps == (0.1,) and host.config == t.config and host.results[0].eps == 0.1


def test_restarts_keep_the_worst_case_per_example():
    m = cached_linear((3, 3, 2))
    x = np.random.default_rng(2).uniform(0, 1, (3, 3, 3, 2)).astype(np.float32)
    one = pgd(m, x, eps=0.1, key=jax.random.key(5), steps=3, restarts=1)
    three = pgd(m, x, eps=0.1, key=jax.random.key(5), steps=3, restarts=3)
    y = np.asarray(jnp.argmax(one.outputs_clean, 1))
    s1, s3 = np.asarray(one.success), np.asarray(three.success)
    assert np.all(s3 >= s1)
    same = s1 == s3
    assert np.all(ce(m, np.asarray(three.x_adv), y)[same] >= ce(m, np.asarray(one.x_adv), y)[same] - 1e-6)


def test_same_key_same_result_whatever_the_chunking():
    m = cached_linear((3, 3, 2))
    x = np.random.default_rng(3).uniform(0, 1, (5, 3, 3, 2)).astype(np.float32)
    two_rows = 2 * chunking.row_bytes(m)  # chunks of 2, 2 and 1 (padded) rows
    assert chunking.rows_per_chunk(m, memory_budget=two_rows) == 2
    # small steps, so the random start still shows at the end (large ones all reach the same corner)
    kw = dict(eps=0.1, steps=3, restarts=2, rel_step_size=0.1)
    a = pgd(m, x, key=jax.random.key(1), **kw)
    b = pgd(m, x, key=jax.random.key(1), memory_budget=two_rows, **kw)
    np.testing.assert_allclose(a.x_adv, b.x_adv, atol=1e-6)
    np.testing.assert_array_equal(a.success, b.success)
    c = pgd(m, x, key=jax.random.key(2), **kw)
    assert not np.allclose(a.x_adv, c.x_adv)


def test_bim_is_deterministic_and_moves_within_budget():
    m = cached_linear((3, 3, 2))
    x = np.random.default_rng(4).uniform(0, 1, (4, 3, 3, 2)).astype(np.float32)
    a, b = bim(m, x, eps=0.05, steps=3), bim(m, x, eps=0.05, steps=3)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
    assert np.all(np.asarray(a.norms) <= 0.05 + 1e-6)


def test_training_perturbation_runs_inside_jit():
    m = cached_linear((3, 3, 2))
    cfg = A.AttackConfig("pgd", steps=1, rel_step_size=1.25, random_start=True)  # FGSM-RS
    perturb = functools.partial(A.perturb, m.apply, eps=0.1, config=cfg, value_range=(0.0, 1.0))
    x = jnp.asarray(np.random.default_rng(5).uniform(0, 1, (8, 3, 3, 2)), jnp.float32)
    xa = jax.jit(perturb)(m.params, x, jnp.zeros(8, jnp.int32), jax.random.key(0))
    assert np.all(A.perturbation_norm(xa - x, "linf") <= 0.1 + 1e-6) and xa.min() >= 0 and xa.max() <= 1
    assert not np.allclose(xa, x)


def test_pure_cores_inside_jit_match_the_public_attacks():
    # the pure cores, traced whole inside a user's jit, give the public (chunked, step-looped) result
    m = cached_linear((3, 3, 2))
    x = np.random.default_rng(6).uniform(0, 1, (4, 3, 3, 2)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    cfg = A.AttackConfig("pgd", steps=3)
    core = jax.jit(functools.partial(A.pgd_core, m.apply, config=cfg, value_range=(0.0, 1.0)))
    # the public attack's restart r starts from fold_in(key, r)
    res = core(m.params, jnp.asarray(x), labels=jnp.asarray(y), eps=0.1, key=jax.random.fold_in(jax.random.key(3), 0))
    pub = pgd(m, x, eps=0.1, key=jax.random.key(3), steps=3, labels=y)
    np.testing.assert_allclose(res.x_adv, pub.x_adv, atol=1e-6)
    np.testing.assert_array_equal(res.success, pub.success)
    assert res.trace.shape == (4, 3 + 1)
    f = jax.jit(functools.partial(A.fgsm_core, m.apply, value_range=(0.0, 1.0)))(
        m.params, jnp.asarray(x), goal=jnp.asarray(y), eps=0.1
    )
    np.testing.assert_allclose(f.x_adv, fgsm(m, x, eps=0.1, goal=y).x_adv, atol=1e-6)


def test_a_custom_objective_is_ascended():
    # target= replaces the loss: here the margin of the runner-up class over the label (CW-style)
    m = cached_linear((3, 3, 2))
    x = np.random.default_rng(7).uniform(0, 1, (5, 3, 3, 2)).astype(np.float32)
    y = np.asarray(jnp.argmax(m.apply(m.params, jnp.asarray(x)), 1))

    def margin(out):
        z_y = jnp.take_along_axis(out, jnp.asarray(y)[:, None], axis=1)[:, 0]
        return jnp.max(jnp.where(jax.nn.one_hot(y, out.shape[1], dtype=bool), -jnp.inf, out), axis=1) - z_y

    r = pgd(m, x, eps=0.05, key=jax.random.key(0), steps=5, target=margin, labels=y)
    before = np.asarray(margin(m.apply(m.params, jnp.asarray(x))))
    after = np.asarray(margin(m.apply(m.params, r.x_adv)))
    assert np.all(after >= before - 1e-6) and np.any(after > before + 1e-3)


def test_no_range_means_no_clipping():
    m = linear_model((4,), value_range=None)
    x = np.ones((2, 4), np.float32)
    r = fgsm(m, x, eps=0.5)
    np.testing.assert_array_equal(r.raw, r.x_adv)
    assert float(np.abs(np.asarray(r.x_adv) - x).max()) == pytest.approx(0.5)


def test_bad_input_raises_before_compiling():
    m = cached_linear((4,))
    x = np.zeros((2, 4), np.float32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"expected eps >= 0 \(finite\), got -0.1"):
        fgsm(m, x, eps=-0.1)
    with pytest.raises(ValueError, match="unknown norm 'l1'; expected one of"):
        pgd(m, x, eps=0.1, key=key, norm="l1")
    with pytest.raises(ValueError, match="class index 3 out of range; model 'linear3' has 3 classes"):
        fgsm(m, x, eps=0.1, goal=np.array([0, 3]))
    with pytest.raises(ValueError, match="class index -1 out of range"):
        fgsm(m, x, eps=0.1, labels=np.array([-1, 0]))
    reg = dataclasses.replace(m, output_kind="regression")
    with pytest.raises(ValueError, match="need a classification model .* 'linear3' is a regression model"):
        pgd(reg, x, eps=0.1, key=key)
    with pytest.raises(ValueError, match="not both"):
        fgsm(m, x, eps=0.1, labels=np.array([0, 1]), goal=np.array([1, 0]))
    with pytest.raises(ValueError, match="needs an explicit key"):
        pgd(m, x, eps=0.1, key=None)
    with pytest.raises(ValueError, match="expected steps >= 1"):
        pgd(m, x, eps=0.1, key=key, steps=0)
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 4\)"):
        fgsm(m, np.zeros((2, 5), np.float32), eps=0.1)
    with pytest.raises(ValueError, match="expected eps as a non-empty sequence"):
        sweep(m, x, eps=[], config=A.AttackConfig("fgsm"))
    with pytest.raises(TypeError, match="eps"):
        fgsm(m, x, eps=[0.1, 0.2])
    with pytest.raises(TypeError, match="key"):  # "expected key to be a jax.random.key" (or the type checker's)
        pgd(m, x, eps=0.1, key=0)
    with pytest.raises(ValueError, match="memory_budget"):
        fgsm(m, x, eps=0.1, memory_budget=0)
    with pytest.raises(TypeError, match="x with a floating dtype"):
        fgsm(m, x.astype(np.uint8), eps=0.1)
    with pytest.raises(ValueError, match="target='all' is not supported"):
        fgsm(m, x, eps=0.1, target="all")


@pytest.mark.filterwarnings("ignore:x has values")
def test_fgsm_stays_in_the_ball_even_for_out_of_range_inputs():
    m = cached_linear((4, 4, 1))
    x = np.random.default_rng(3).uniform(0.5, 1.5, (6, 4, 4, 1)).astype(np.float32)  # half outside [0, 1]
    r = fgsm(m, x, eps=0.05)
    assert float(np.abs(np.asarray(r.x_adv) - x).max()) <= 0.05 + 1e-6


def test_keep_best_false_is_refused_by_the_public_sweep():
    m = cached_linear((4, 4, 1))
    with pytest.raises(ValueError, match="keep_best=True"):
        sweep(m, np.zeros((2, 4, 4, 1), np.float32), eps=[0.1], config=A.AttackConfig("pgd", steps=2, keep_best=False))


def test_eps_zero_runs_the_attack_and_returns_the_input(key):
    m = cached_linear((4, 4, 1))
    x = np.random.default_rng(4).uniform(size=(5, 4, 4, 1)).astype(np.float32)
    s = sweep(m, x, eps=[0.0], config=A.AttackConfig("pgd", steps=3), key=key)
    np.testing.assert_array_equal(np.asarray(s.results[0].x_adv), x)
    assert not np.asarray(s.results[0].success).any()


@pytest.mark.parametrize("kind", ["cw", "dlr"])
def test_margin_losses_are_attack_objectives(kind):
    # explain.targets.loss(labels, "cw" | "dlr") as target=: ascended inside the ε-ball.
    m = cached_linear((3, 3, 2))
    x = np.random.default_rng(8).uniform(0, 1, (5, 3, 3, 2)).astype(np.float32)
    y = np.asarray(jnp.argmax(m.apply(m.params, jnp.asarray(x)), 1))
    objective = explain.targets.loss(y, kind)
    r = pgd(m, x, eps=0.05, key=jax.random.key(1), steps=5, target=objective, labels=y)
    bound = explain.targets.resolve(m, objective, len(y))
    before = np.asarray(bound(m.apply(m.params, jnp.asarray(x))))
    after = np.asarray(bound(m.apply(m.params, r.x_adv)))
    assert np.all(after >= before - 1e-6) and np.any(after > before + 1e-3)
    assert float(np.abs(np.asarray(r.x_adv) - x).max()) <= 0.05 + 1e-6
