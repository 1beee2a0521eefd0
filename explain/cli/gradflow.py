"""``python -m explain gradflow``: the depth experiment, or one model's per-layer gradient flow.

Examples::

    python -m explain gradflow --experiment depth --out out/gradflow       # CSV + PNG
    python -m explain gradflow --model shapes_cnn --n 32 --out out/gradflow
    python -m explain gradflow --model path/to/my_models.py:make_bundle --out out/gradflow
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import numpy as np

from explain.cli import _args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", choices=["depth"], help="run the depth experiment")
    _args.add_model(
        parser,
        required=False,
        example="shapes_cnn or my_models.py:make_bundle; per-layer gradient flow and the Jacobian chain",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--max-depth", type=int, default=30)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128, help="samples of the depth experiment")
    parser.add_argument("--steps", type=int, default=5, help="optax (Adam) steps before the second measurement")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activations", default="sigmoid,tanh,relu", help="comma-separated")
    parser.add_argument("--inits", default="normal,glorot,he", help="comma-separated: normal, glorot, he, lecun")
    parser.add_argument("--n", type=int, default=32, help="test samples for --model")
    _args.add_memory_budget(parser)


def _run_depth(args) -> int:
    from explain.primer import chain_rule, depth

    t0 = time.perf_counter()
    rows = depth.depth_experiment(
        max_depth=args.max_depth,
        activations=tuple(args.activations.split(",")),
        inits=tuple(args.inits.split(",")),
        width=args.width,
        batch=args.batch,
        steps=args.steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    seconds = time.perf_counter() - t0
    csv_path = depth.write_csv(rows, args.out / "depth.csv")
    png_path = depth.plot(rows, args.out / "depth.png")
    d = min(20, args.max_depth)
    print(
        f"depth experiment: {len(rows)} rows in {seconds:.1f} s (seed {args.seed}, width {args.width}, batch {args.batch})"
    )
    print(f"first/last gradient-norm ratio at depth {d}:")
    print(f"  {'activation':<10} {'init':<8} {'at init':>12} {'trained':>12} {'weight ratio':>13}")
    for r in rows:
        if r.depth == d and r.stage == "init":
            tr = next(q for q in rows if q[:2] == r[:2] and q.depth == d and q.stage == "trained")
            print(f"  {r.activation:<10} {r.init:<8} {r.ratio:12.3e} {tr.ratio:12.3e} {r.weight_ratio:13.3e}")
    print(f"  max sigmoid'(x) on a dense grid: {chain_rule.sigmoid_derivative_max():.6f} (<= 0.25)")
    print(f"  bound 0.25^{d} = {chain_rule.sigmoid_chain_bound(d):.3e}; 0.25^{d - 1} = {0.25 ** (d - 1):.3e}")
    print(f"wrote {csv_path} and {png_path}")
    return 0


def _run_model(args) -> int:
    import explain.gradflow as gf
    from explain import specs
    from explain.io import atomic_write_text

    bundle = specs.resolve(args.model)
    test = bundle.split("test", command="gradflow")
    x, y = test.x[: args.n], test.y[: args.n]
    opts = {"memory_budget": args.memory_budget, "show_progress": True}
    flow = gf.gradient_flow(bundle.model, x, labels=y, **opts)
    chain = gf.jacobian_chain(bundle.model, x, labels=y, **opts)
    rows = flow.rows()
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path = atomic_write_text(args.out / f"{bundle.stem}_gradflow.csv", buf.getvalue())
    print(f"{bundle.name}: gradient of {flow.target_name} over {len(x)} test samples")
    for r in rows:
        print(
            f"  {r['layer']:<12} |dL/dh| {r['act_grad_mean']:.3e} ± {r['act_grad_std']:.1e}  "
            f"|dL/dW| {r['param_grad_mean']:.3e} ± {r['param_grad_std']:.1e}  dead {r['dead_fraction']:.1%}"
        )
    print("Jacobian chain (accumulated d outputs / d h, mean over samples):")
    smax, smin = np.asarray(chain.sigma_max).mean(0), np.asarray(chain.sigma_min).mean(0)
    for cut, dep, err, a, b in zip(chain.cuts, chain.depth, np.asarray(chain.chain_error), smax, smin):
        print(f"  {cut:<12} depth {dep}  sigma_max {a:.3e}  sigma_min {b:.3e}  chain error {err:.1e}")
    print(f"wrote {path}")
    return 0


def run(args) -> int:
    if (args.experiment is None) == (args.model is None):
        raise SystemExit("gradflow: give exactly one of --experiment depth or --model SPEC")
    if args.n < 1:
        raise SystemExit(f"gradflow: --n must be >= 1; got {args.n}")
    return _run_depth(args) if args.experiment else _run_model(args)
