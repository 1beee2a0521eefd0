"""``python -m usermodels.train``: a few optax steps for each model; weights to ``weights/`` (msgpack)."""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx, serialization

from usermodels import data, nets


def train_cnn(steps: int = 100) -> float:
    model = nets.CNN(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    train, test = data.image_splits().train, data.image_splits().test
    rngs = nnx.Rngs(dropout=1)

    @nnx.jit
    def step(model, optimizer, x, y, rngs):
        def loss_fn(model, rngs):
            logits = model(x, rngs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model, rngs)
        optimizer.update(model, grads)
        return loss

    batches = np.random.default_rng(0)
    for _ in range(steps):
        idx = batches.integers(0, len(train.x), 64)
        step(model, optimizer, train.x[idx], train.y[idx], rngs)
    model.eval()
    accuracy = float((model(test.x, rngs).argmax(-1) == test.y).mean())
    (nets.WEIGHTS / "cnn.msgpack").write_bytes(serialization.msgpack_serialize(nnx.state(model).to_pure_dict()))
    return accuracy


def train_mlp(steps: int = 300) -> float:
    module, variables = nets.MLP(), nets.mlp_variables()
    params, stats = variables["params"], variables["batch_stats"]
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    train, test = data.row_splits().train, data.row_splits().test

    @jax.jit
    def step(params, stats, opt_state, x, y, key):
        def loss_fn(params):
            logits, updates = module.apply(
                {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]

        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), stats, opt_state

    batches = np.random.default_rng(0)
    for i in range(steps):
        idx = batches.integers(0, len(train.x), 64)
        params, stats, opt_state = step(params, stats, opt_state, train.x[idx], train.y[idx], jax.random.key(i))
    variables = {"params": params, "batch_stats": stats}
    accuracy = float((module.apply(variables, test.x, train=False).argmax(-1) == test.y).mean())
    (nets.WEIGHTS / "mlp.msgpack").write_bytes(serialization.to_bytes(variables))
    return accuracy


if __name__ == "__main__":
    nets.WEIGHTS.mkdir(exist_ok=True)
    print(f"cnn test accuracy {train_cnn():.3f}")
    print(f"mlp test accuracy {train_mlp():.3f}")
