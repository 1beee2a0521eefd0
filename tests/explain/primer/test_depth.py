"""The depth experiment: vanishing and exploding gradients measured, checked against an unrolled MLP."""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from explain.primer import chain_rule, depth

SEED = 0


@pytest.fixture(scope="module")
def at_depth_20():
    """Depth 20, width 64, batch 128, at initialisation (steps=0), seed 0."""
    combos = [("sigmoid", "glorot"), ("relu", "he"), ("relu", "glorot")]
    return {c: depth.depth_rows(*c, 20, width=64, batch=128, steps=0, seed=SEED)[0] for c in combos}


def test_sigmoid_glorot_vanishes(at_depth_20):
    bound = chain_rule.sigmoid_chain_bound(20)
    r = at_depth_20[("sigmoid", "glorot")]
    print(f"sigmoid/glorot depth 20 seed {SEED}: ratio {r.ratio:.3e}  bound (0.25)^20 = {bound:.3e}")
    assert 0 < r.ratio < 1e-8


def test_relu_he_keeps_the_gradient(at_depth_20):
    r = at_depth_20[("relu", "he")]
    print(f"relu/he depth 20 seed {SEED}: ratio {r.ratio:.3e}")
    assert 0.1 <= r.ratio <= 10


def test_relu_glorot_decays_slower_than_sigmoid(at_depth_20):
    relu, sig = at_depth_20[("relu", "glorot")], at_depth_20[("sigmoid", "glorot")]
    print(f"relu/glorot depth 20 seed {SEED}: ratio {relu.ratio:.3e}")
    assert sig.ratio * 1e3 < relu.ratio < 0.1


def _unrolled_ratio(activation, init, d, *, width, batch, num_classes, seed):
    """A plain Python-loop MLP of depth d with the same weights and data, differentiated by jax.grad."""
    params = depth.init_mlp(jax.random.fold_in(jax.random.key(seed), d), init, d, width=width, num_classes=num_classes)
    x, y = depth._data(seed, width, batch, num_classes)
    act = depth.ACTIVATIONS[activation]

    def loss(deltas):
        h = x
        for i in range(d):
            h = act(h @ params["w"][i] + params["b"][i]) + deltas[i]
        logits = h @ params["head_w"] + params["head_b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    g = jax.jit(jax.grad(loss))([jnp.zeros((batch, width)) for _ in range(d)])
    return float(jnp.linalg.norm(g[0]) / jnp.linalg.norm(g[-1]))


@pytest.mark.parametrize(("activation", "init"), [("sigmoid", "normal")])
def test_scanned_padded_mlp_equals_unrolled(activation, init):
    opts = dict(width=8, batch=16, num_classes=3, seed=3)
    ref = _unrolled_ratio(activation, init, 3, **opts)
    short = depth.depth_rows(activation, init, 3, steps=0, **opts)[0]
    padded = depth.depth_rows(activation, init, 3, max_depth=6, steps=0, **opts)[0]
    np.testing.assert_allclose(short.ratio, ref, rtol=1e-4)
    np.testing.assert_allclose(padded.ratio, ref, rtol=1e-4)


def test_training_changes_the_loss():
    # Same shapes and options as the command-line test: reuses its compiled function.
    r0, r1 = depth.depth_rows("tanh", "glorot", 2, max_depth=2, width=8, batch=16, steps=1)
    assert (r0.stage, r1.stage) == ("init", "trained")
    assert r1.loss < r0.loss


def test_cli_writes_csv_and_plot(tmp_path, capsys):
    from explain.__main__ import main

    args = ["gradflow", "--experiment", "depth", "--out", str(tmp_path), "--max-depth", "2", "--width", "8"]
    assert main([*args, "--batch", "16", "--steps", "1", "--activations", "tanh", "--inits", "glorot,he"]) == 0
    out = capsys.readouterr().out
    assert "0.25^2 = 6.250e-02" in out and "tanh       he" in out
    with (tmp_path / "depth.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 1 * 2 * 2
    assert {(r["activation"], r["init"]) for r in rows} == {("tanh", "glorot"), ("tanh", "he")}
    assert all(float(r["ratio"]) == 1.0 for r in rows if r["depth"] == "1")
    assert (tmp_path / "depth.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(activation="relu", init="he", depth=0), "expected depth >= 1"),
        (dict(activation="gelu", init="he", depth=2), "unknown activation 'gelu'"),
        (dict(activation="relu", init="xavier", depth=2), "unknown init 'xavier'"),
        (dict(activation="relu", init="he", depth=4, max_depth=3), "expected depth <= max_depth"),
        (dict(activation="relu", init="he", depth=2, learning_rate=0.0), "expected learning_rate > 0"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        depth.depth_rows(**kwargs)


def test_bad_experiment_input():
    with pytest.raises(ValueError, match="expected max_depth >= 1"):
        depth.depth_experiment(max_depth=0)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        depth.depth_experiment(activations=("swish",))
