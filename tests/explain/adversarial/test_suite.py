"""Suites: the attack tables, sequence on the robust points, worst case never weaker than any single attack."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from explain.adversarial import AttackConfig, sweep
from explain.adversarial.evaluation import evaluate_robustness
from explain.adversarial.suite import CLEAN, suite_attacks


def test_suite_tables():
    std = suite_attacks("standard")
    assert list(std) == ["apgd-ce", "apgd-t", "square"]
    assert (std["apgd-ce"].kind, std["apgd-ce"].steps, std["apgd-ce"].loss) == ("apgd", 100, "ce")
    assert (std["apgd-t"].loss, std["apgd-t"].target_classes) == ("dlr_targeted", 9)
    assert (std["square"].kind, std["square"].steps) == ("square", 5000)
    assert all(c.norm == "l2" for c in suite_attacks("rapid", "l2").values())
    with pytest.raises(ValueError, match=r"unknown suite 'full'.*'rapid', 'standard'"):
        suite_attacks("full")


@pytest.fixture(scope="module")
def shapes():
    import models

    b = models.load("shapes_cnn")
    return b.model, b.dataset.test.x[:24], b.dataset.test.y[:24]


SHORT = {  # the rapid suite's attacks with 10 steps: the same code path at a fifth of the cost
    "apgd-ce": AttackConfig("apgd", steps=10),
    "apgd-t": AttackConfig("apgd", steps=10, loss="dlr_targeted", target_classes=3),
}


def test_suite_worst_case_is_never_weaker_than_any_attack_alone_nor_than_pgd20(shapes, monkeypatch):
    from explain.adversarial import evaluation

    monkeypatch.setattr(evaluation, "suite_attacks", lambda suite, norm: SHORT)
    model, x, y = shapes
    key, eps = jax.random.key(0), 2 / 255
    rep = evaluate_robustness(model, x, labels=y, eps=[0, eps], key=key, suite="rapid", large_eps_examples=8)
    at0, r = rep.suite_results
    assert at0.robust_after == (rep.clean_accuracy,) * 2  # ε = 0 breaks nothing
    assert all(a >= b for a, b in zip(r.robust_after, r.robust_after[1:]))  # cumulative
    broken = np.array([b != "" for b in r.broken_by])
    assert r.robust_accuracy == pytest.approx(1 - broken.mean())
    pred = np.argmax(np.asarray(model.apply(model.params, x)), 1)
    np.testing.assert_array_equal(np.array([b == CLEAN for b in r.broken_by]), pred != y)
    for i, (name, cfg) in enumerate(SHORT.items()):
        # alone, with the key the suite gave it: every example it breaks, the suite breaks too
        alone = sweep(model, x, eps=[eps], config=cfg, key=jax.random.fold_in(key, i), keep_inputs=False).results[0]
        assert not np.any(np.asarray(alone.success) & ~broken), name
    p = sweep(model, x, eps=[eps], config=AttackConfig("pgd", steps=20), key=key, keep_inputs=False).results[0]
    pgd_acc = float(np.mean(np.argmax(np.asarray(p.outputs_adv), 1) == y))
    assert r.robust_accuracy <= pgd_acc
    assert [row.accuracy for row in rep.rows if row.eps == eps] == list(r.robust_after)


def test_suite_arguments_are_checked_before_anything_runs(shapes):
    model, x, y = shapes
    with pytest.raises(ValueError, match="unknown suite 'auto'"):
        evaluate_robustness(model, x, labels=y, eps=[0.1], key=jax.random.key(0), suite="auto")
    with pytest.raises(ValueError, match="exactly one"):
        evaluate_robustness(
            model, x, labels=y, eps=[0.1], key=jax.random.key(0), suite="rapid", attacks={"f": AttackConfig("fgsm")}
        )
    with pytest.raises(ValueError, match="expected eps >= 0"):
        evaluate_robustness(model, x, labels=y, eps=[-0.1], key=jax.random.key(0), suite="rapid")
