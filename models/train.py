"""Train a shipped model with optax on CPU, deterministically: ``python -m models.train NAME``.

Writes ``models/checkpoints/NAME.msgpack`` and ``NAME.json`` (dataset and its
split hashes, seed, parameter count, validation and test metric, sha256).
Same seed, same data, same machine type: the same weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from models import checkpoint
from models.datasets import Dataset, Split, load_dataset
from models.registry import SPECS, ModelSpec, get_spec, num_outputs

Perturb = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


def loss_fn(module, kind: str):
    """Cross-entropy on logits (classification) or MSE (regression), averaged over the batch."""

    def loss(params, x, y):
        out = module.apply({"params": params}, x)
        if kind == "classification":
            return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        return jnp.mean((out[:, 0] - y) ** 2)

    return loss


def predict(module, variables, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Outputs ``(N, K)`` in chunks of ``batch`` rows."""
    fwd = jax.jit(module.apply)
    return np.concatenate([np.asarray(fwd(variables, x[i : i + batch])) for i in range(0, len(x), batch)])


def metric(kind: str, out: np.ndarray, y: np.ndarray) -> float:
    """Accuracy for classification, R² for regression."""
    if kind == "classification":
        return float((out.argmax(1) == y).mean())
    resid = ((out[:, 0] - y) ** 2).sum()
    return float(1.0 - resid / ((y - y.mean()) ** 2).sum())


def dihedral_augment(x: jax.Array, key: jax.Array) -> jax.Array:
    """Random flips and transposes of ``(N, H, W, C)`` images, one of the 8 symmetries of the square per image.

    Shape classes are invariant to these, so each epoch sees new views of the
    same images; that closes most of the gap between train and test accuracy.
    """
    k1, k2, k3 = jax.random.split(key, 3)
    n = x.shape[0]

    def pick(k, a, b):
        return jnp.where(jax.random.bernoulli(k, 0.5, (n, 1, 1, 1)), a, b)

    x = pick(k1, x[:, ::-1], x)
    x = pick(k2, x[:, :, ::-1], x)
    return pick(k3, jnp.swapaxes(x, 1, 2), x) if x.shape[1] == x.shape[2] else x


def train(
    spec: ModelSpec,
    ds: Dataset,
    *,
    epochs: int | None = None,
    perturb: Perturb | None = None,
    progress: bool = True,
    init_variables: Any | None = None,
) -> tuple[Any, dict]:
    """Trains ``spec`` on ``ds.train``; returns ``(variables, metrics)``.

    ``perturb(params, x, y, key) -> x'``, when given, replaces each batch by an
    adversarial one before the step (adversarial training). ``init_variables``,
    when given, replaces the random initialisation (fine-tuning).
    """
    cfg = spec.train
    epochs = epochs or cfg.epochs
    module = spec.make_module(num_outputs(ds))
    train_split: Split = ds.train
    n = len(train_split)
    steps_per_epoch = n // cfg.batch_size
    key = jax.random.key(cfg.seed)
    key, init_key = jax.random.split(key)
    params = module.init(init_key, jnp.zeros((1, *ds.input_shape), jnp.float32))["params"]
    if init_variables is not None:
        params = jax.tree_util.tree_map(jnp.asarray, init_variables["params"])
    total = epochs * steps_per_epoch
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, max(1, total // 10), total)
    tx = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    opt_state = tx.init(params)
    loss = loss_fn(module, ds.kind)

    @jax.jit
    def step(params, opt_state, x, y, key):
        if cfg.augment:
            key, aug_key = jax.random.split(key)
            x = dihedral_augment(x, aug_key)
        if perturb is not None:
            x = perturb(params, x, y, key)
        val, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, val

    rng = np.random.default_rng(cfg.seed)
    x_all, y_all = train_split.x, train_split.y
    bar = tqdm(range(epochs), desc=spec.name, disable=not progress, mininterval=2.0)
    for _ in bar:
        order = rng.permutation(n)
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            key, sub = jax.random.split(key)
            params, opt_state, val = step(params, opt_state, x_all[idx], y_all[idx], sub)
            losses.append(val)
        bar.set_postfix(loss=f"{float(np.mean(jax.device_get(losses))):.4f}")
    variables = {"params": params}
    metrics = {
        f"val_{spec.target_metric}": metric(ds.kind, predict(module, variables, ds.val.x), ds.val.y),
        f"test_{spec.target_metric}": metric(ds.kind, predict(module, variables, ds.test.x), ds.test.y),
    }
    return variables, metrics


def metadata(spec: ModelSpec, ds: Dataset, variables: Any, metrics: dict, seconds: float, **extra) -> dict:
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables))
    return {
        "model": spec.name,
        "dataset": ds.name,
        "dataset_seed": ds.seed,
        "dataset_split_hashes": ds.split_hashes(),
        "seed": spec.train.seed,
        "train_config": {k: getattr(spec.train, k) for k in spec.train.__dataclass_fields__},
        "param_count": n_params,
        "metrics": metrics,
        "target": {spec.target_metric: spec.target_value},
        "train_seconds": round(seconds, 1),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
        **extra,
    }


def adversarial_perturb(spec: ModelSpec, ds: Dataset, attack: str, eps: float, pgd_steps: int) -> Perturb:
    """``perturb`` for :func:`train`: FGSM with random start (Wong et al. 2020, α = 1.25ε) or PGD-K (α = 2.5ε/K).

    Built from the pure attack in :mod:`explain.adversarial` on the module's own
    apply and the library's exact float32 cross-entropy, so it traces inside the jitted step.
    """
    from explain.adversarial import AttackConfig, perturb

    if attack not in ("fgsm-rs", "pgd"):
        raise ValueError(f"unknown adversarial training attack {attack!r}; expected 'fgsm-rs' or 'pgd'")
    if ds.kind != "classification":
        raise ValueError(f"adversarial training needs a classification model; {spec.name!r} is {ds.kind}")
    if attack == "fgsm-rs":
        config = AttackConfig("pgd", steps=1, rel_step_size=1.25, random_start=True)
    else:
        config = AttackConfig("pgd", steps=pgd_steps, random_start=True)
    module = spec.make_module(num_outputs(ds))
    apply = lambda params, x: module.apply({"params": params}, x)  # noqa: E731
    return functools.partial(perturb, apply, eps=eps, config=config, value_range=ds.value_range)


def robust_metrics(spec: ModelSpec, ds: Dataset, variables: Any, eps: float, steps: int = 20) -> dict:
    """Clean and PGD-``steps`` (L∞, ε, one random start, labels = predictions) accuracy on the test split."""
    import explain.adversarial as adv
    from models.registry import wrap

    model = wrap(spec, ds, spec.make_module(num_outputs(ds)), variables)
    s = adv.sweep(
        model,
        ds.test.x,
        eps=[eps],
        config=adv.AttackConfig("pgd", steps=steps),
        key=jax.random.key(0),
        keep_inputs=False,
    )
    r = s.results[0]
    return {
        "attack": f"pgd-{steps} linf, 1 random start, step 2.5*eps/{steps}, labels=predictions",
        "eps": eps,
        "n": len(ds.test),
        "clean_accuracy": metric("classification", np.asarray(r.outputs_clean), ds.test.y),
        "pgd_accuracy": metric("classification", np.asarray(r.outputs_adv), ds.test.y),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__)
    parser.add_argument("name", choices=sorted(SPECS), help="model to train")
    parser.add_argument("--epochs", type=int, default=None, help="override the registry's epoch count")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint path (default: the shipped one)")
    parser.add_argument("--learning-rate", type=float, default=None, help="override the registry's peak learning rate")
    parser.add_argument("--adversarial", choices=("fgsm-rs", "pgd"), default=None, help="adversarial training attack")
    parser.add_argument("--eps", type=lambda t: float(Fraction(t)), default=None, help="L-inf budget, e.g. 8/255")
    parser.add_argument("--pgd-steps", type=int, default=7, help="PGD steps when --adversarial pgd")
    parser.add_argument(
        "--init-from", default=None, help="start from a shipped model's weights (fine-tuning), e.g. shapes_cnn"
    )
    args = parser.parse_args(argv)
    spec = get_spec(args.name)
    if args.adversarial and f"{spec.name}_robust" in SPECS:
        spec = SPECS[f"{spec.name}_robust"]  # the standard checkpoint stays untouched
    if (args.adversarial is None) != (args.eps is None):
        parser.error("--adversarial and --eps go together")
    if args.eps is not None and not args.eps > 0:
        parser.error(f"expected --eps > 0, got {args.eps}")
    if args.learning_rate is not None:
        if not args.learning_rate > 0:
            parser.error(f"expected --learning-rate > 0, got {args.learning_rate}")
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, learning_rate=args.learning_rate))
    ds = load_dataset(spec.dataset, seed=0)
    perturb = adversarial_perturb(spec, ds, args.adversarial, args.eps, args.pgd_steps) if args.adversarial else None
    t0 = time.perf_counter()
    init = None
    if args.init_from:
        from models.registry import load

        init = load(args.init_from).model.params
    variables, metrics = train(spec, ds, epochs=args.epochs, perturb=perturb, init_variables=init)
    seconds = time.perf_counter() - t0
    extra = {}
    if args.adversarial:
        extra["adversarial_training"] = {
            "attack": args.adversarial,
            "eps": args.eps,
            "pgd_steps": args.pgd_steps,
            "epochs": args.epochs or spec.train.epochs,
            "init_from": args.init_from,
            "learning_rate": spec.train.learning_rate,
        }
        extra["robustness"] = robust_metrics(spec, ds, variables, args.eps)
        print(f"{spec.name}: {extra['robustness']}")
    meta = checkpoint.save(
        args.out or spec.checkpoint_path, variables, metadata(spec, ds, variables, metrics, seconds, **extra)
    )
    print(f"{spec.name}: {metrics} in {seconds:.0f}s -> {meta['file']} (sha256 {meta['sha256'][:12]}…)")


if __name__ == "__main__":
    main()
