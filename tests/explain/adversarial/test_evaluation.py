"""Robustness evaluation: the acceptance run on shapes_cnn, and each sanity check made to fail on purpose."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import explain
from explain.adversarial import AttackConfig, sweep
from explain.adversarial.evaluation import evaluate_robustness, format_report, plot, write_csv

FGSM, PGD5 = AttackConfig("fgsm"), AttackConfig("pgd", steps=5)


@pytest.fixture(scope="module")
def shapes():
    import models

    b = models.load("shapes_cnn")
    return b.model, b.dataset.test.x[:512], b.dataset.test.y[:512]


def test_pgd20_at_most_fgsm_on_128_shapes(shapes):
    # 128 images keep the suite fast (PGD-20 costs 20 gradients per image) with a wide margin:
    # measured at ε = 2/255 (exact float32 loss), clean 0.977, FGSM 0.695, PGD-20 0.578 on these
    # 128 (0.980, 0.723, 0.563 on 512). One ε: the full grid is the command line's report.
    model, x, y = shapes
    x, y = x[:128], y[:128]
    eps = [2 / 255]
    f = sweep(model, x, eps=eps, config=FGSM, keep_inputs=False)
    p = sweep(model, x, eps=eps, config=AttackConfig("pgd", steps=20), key=jax.random.key(0), keep_inputs=False)
    for rf, rp in zip(f.results, p.results):
        acc_f = float(np.mean(np.argmax(rf.outputs_adv, 1) == y))
        acc_p = float(np.mean(np.argmax(rp.outputs_adv, 1) == y))
        assert acc_p <= acc_f
        assert acc_p < float(np.mean(np.argmax(rf.outputs_clean, 1) == y))
        trace = np.asarray(rp.objective_trace)
        assert trace[-1] > trace[0]  # the loss rises along the attack


def test_sanity_checks_pass_on_shapes_and_files_are_written(shapes, tmp_path):
    model, x, y = shapes
    rep = evaluate_robustness(
        model,
        x[:64],
        labels=y[:64],
        attacks={"fgsm": FGSM, "pgd": PGD5},
        eps=[0, 8 / 255],
        key=jax.random.key(0),
        large_eps_examples=32,
    )
    assert not rep.failed, format_report(rep)
    assert {c.name for c in rep.checks} >= {
        "eps0_is_clean",
        "monotone_in_eps",
        "iterative_beats_single_step",
        "large_eps_reaches_chance",
        "loss_rises",
        "no_zero_gradients",
        "outputs_are_logits",
        "label_source",
    }
    assert all(r.label_source == "predictions" for r in rep.rows)
    csv = write_csv(rep, tmp_path / "r.csv").read_text().splitlines()
    assert csv[0].startswith("model,attack,norm,eps,n,accuracy,success_rate,norm_mean,norm_median,label_source")
    assert len(csv) == 1 + 4
    png = plot(rep, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _toy(apply, k=3, shape=(4,)):
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(int(np.prod(shape)), k)), jnp.float32)}
    return explain.Model(apply, params, explain.InputSpec(shape, (0.0, 1.0)), name="toy")


X = np.random.default_rng(1).uniform(0, 1, (12, 4)).astype(np.float32)
Y = np.arange(12) % 3


def _check(rep, name):
    return next(c for c in rep.checks if c.name == name)


def test_probability_outputs_and_saturation_are_flagged():
    probs = _toy(lambda p, x: jax.nn.softmax(50.0 * x @ p["w"], axis=1))
    rep = evaluate_robustness(
        probs, X, labels=Y, attacks={"fgsm": FGSM, "pgd": PGD5}, eps=[0, 0.05], key=jax.random.key(0)
    )
    assert _check(rep, "outputs_are_logits").passed is False
    assert "probabilities" in _check(rep, "outputs_are_logits").detail


def test_zero_gradients_and_masking_are_flagged():
    # a quantised input: the gradient is zero almost everywhere, so attacks cannot move
    masked = _toy(lambda p, x: jnp.round(x * 2) / 2 @ p["w"])
    y = np.asarray(jnp.argmax(masked.apply(masked.params, X), 1))  # clean accuracy 1: only the attack can lower it
    rep = evaluate_robustness(
        masked, X, labels=y, attacks={"fgsm": FGSM, "pgd": PGD5}, eps=[0, 0.05], key=jax.random.key(0)
    )
    assert _check(rep, "no_zero_gradients").passed is False
    assert _check(rep, "large_eps_reaches_chance").passed is False
    assert _check(rep, "loss_rises").passed is False
    assert _check(rep, "eps0_is_clean").passed is True


def test_ordering_checks_fail_when_the_table_is_wrong():
    from explain.adversarial import evaluation as E

    rows = [
        E.Row("pgd", "linf", e, 10, a, 0.0, 0.0, 0.0, "predictions") for e, a in [(0.0, 0.9), (0.1, 0.5), (0.2, 0.7)]
    ]
    rows += [
        E.Row("fgsm", "linf", e, 10, a, 0.0, 0.0, 0.0, "predictions") for e, a in [(0.0, 0.9), (0.1, 0.4), (0.2, 0.3)]
    ]
    by = {"pgd": rows[:3], "fgsm": rows[3:]}
    assert E._check_monotone(by, 0.0).passed is False
    assert E._check_iterative(by, {"pgd": PGD5, "fgsm": FGSM}, 0.0).passed is False
    assert E._check_eps0(rows, 0.8).passed is False


def test_label_source_ground_truth_is_reported():
    m = _toy(lambda p, x: x @ p["w"])
    rep = evaluate_robustness(
        m, X, labels=Y, attacks={"fgsm": FGSM}, eps=[0.05], key=jax.random.key(0), label_source="labels"
    )
    assert rep.label_source == "labels" and all(r.label_source == "labels" for r in rep.rows)
    assert "ground truth" in _check(rep, "label_source").detail
    assert _check(rep, "iterative_beats_single_step").passed is None


def test_evaluation_errors():
    m = _toy(lambda p, x: x @ p["w"])
    with pytest.raises(ValueError, match="unknown label_source 'truth'"):
        evaluate_robustness(
            m, X, labels=Y, attacks={"fgsm": FGSM}, eps=[0.1], key=jax.random.key(0), label_source="truth"
        )
    with pytest.raises(ValueError, match=r"expected labels of shape \(12,\)"):
        evaluate_robustness(m, X, labels=Y[:3], attacks={"fgsm": FGSM}, eps=[0.1], key=jax.random.key(0))
    with pytest.raises(ValueError, match="at least one attack"):
        evaluate_robustness(m, X, labels=Y, attacks={}, eps=[0.1], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected integer classes in 0\.\."):
        evaluate_robustness(m, X, labels=Y + 100, attacks={"fgsm": FGSM}, eps=[0.1], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected integer classes"):
        evaluate_robustness(m, X, labels=Y.astype(np.float32), attacks={"fgsm": FGSM}, eps=[0.1], key=jax.random.key(0))
    with pytest.raises(ValueError, match="keep_best=True"):
        evaluate_robustness(
            m, X, labels=Y, attacks={"pgd": AttackConfig("pgd", keep_best=False)}, eps=[0.1], key=jax.random.key(0)
        )
    with pytest.raises(TypeError, match="key"):
        evaluate_robustness(m, X, labels=Y, attacks={"fgsm": FGSM}, eps=[0.1], key=0)


def test_robust_checkpoint_metadata_matches_its_weights():
    import models

    b = models.load("shapes_cnn_robust")
    rob = b.metadata["robustness"]
    assert b.metadata["adversarial_training"]["eps"] == rob["eps"]
    logits = b.model.apply(b.model.params, jnp.asarray(b.dataset.test.x))
    clean = float(np.mean(np.argmax(logits, 1) == b.dataset.test.y))
    assert clean == pytest.approx(rob["clean_accuracy"], abs=1e-6)
    assert rob["pgd_accuracy"] < clean


def _scaled(model: explain.Model, factor: float) -> explain.Model:
    """The model with its logits multiplied by ``factor``: same predictions, a saturated softmax."""
    import dataclasses

    return dataclasses.replace(model, apply=lambda p, x: factor * model.apply(p, x), name=f"{model.name}x{factor:g}")


def _linear(k=4, scale=0.3):
    from attack_testlib import linear_model

    return linear_model((4, 4, 1), k=k, scale=scale)


def test_float64_sign_check_passes_on_an_honest_model_and_trips_on_saturated_logits():
    from explain.adversarial.evaluation import sign_disagreement

    g = np.array([[1.0, -2.0, 3e-9], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(sign_disagreement(g, g), [False, False])
    np.testing.assert_array_equal(sign_disagreement(np.zeros_like(g), g), [True, True])
    m = _linear()
    x = np.random.default_rng(0).uniform(0, 1, (32, 4, 4, 1)).astype(np.float32)
    y = np.argmax(np.asarray(m.apply(m.params, x)), 1)
    kw = dict(labels=y, attacks={"fgsm": FGSM}, eps=[0.01], key=jax.random.key(0))
    check = lambda rep: next(c for c in rep.checks if c.name == "loss_gradient_float64")  # noqa: E731
    assert check(evaluate_robustness(m, x, **kw)).passed is True
    # logit gaps of a few hundred: exp(-gap) underflows in float32 (below ~1e-45), not in float64
    hot = check(evaluate_robustness(_scaled(m, 300.0), x, **kw))
    assert hot.passed is False and "saturated" in hot.detail


def test_margin_check_trips_when_cross_entropy_saturates():
    m = _scaled(_linear(scale=3.0), 1000.0)
    x = np.random.default_rng(1).uniform(0, 1, (32, 4, 4, 1)).astype(np.float32)
    y = np.argmax(np.asarray(m.apply(m.params, x)), 1)
    attacks = {"apgd-ce": AttackConfig("apgd", steps=10), "apgd-dlr": AttackConfig("apgd", steps=10, loss="dlr")}
    rep = evaluate_robustness(m, x, labels=y, attacks=attacks, eps=[0.3], key=jax.random.key(0))
    check = next(c for c in rep.checks if c.name == "margin_loss_not_stronger")
    assert check.passed is False and "CE saturation" in check.detail, format_report(rep)


def test_gradient_free_check_trips_on_a_quantised_model():
    import dataclasses

    m = _linear(scale=8.0)
    q = dataclasses.replace(m, apply=lambda p, x: m.apply(p, jnp.round(x * 7) / 7), name="quantised")
    x = np.random.default_rng(2).uniform(0, 1, (16, 4, 4, 1)).astype(np.float32)
    y = np.argmax(np.asarray(q.apply(q.params, x)), 1)
    attacks = {"apgd-ce": AttackConfig("apgd", steps=10), "square": AttackConfig("square", steps=150, loss="cw")}
    rep = evaluate_robustness(q, x, labels=y, attacks=attacks, eps=[0.3], key=jax.random.key(0))
    check = next(c for c in rep.checks if c.name == "gradient_free_not_stronger")
    assert check.passed is False and "gradient masking" in check.detail, format_report(rep)
    honest = evaluate_robustness(m, x, labels=y, attacks=attacks, eps=[0.3], key=jax.random.key(0))
    assert next(c for c in honest.checks if c.name == "gradient_free_not_stronger").passed is True
