"""``python -m explain gradflow``: the depth experiment, or one model's per-layer gradient flow.

Examples::

    python -m explain gradflow --experiment depth --out out/gradflow       # CSV + PNG
    python -m explain gradflow --model shapes_cnn --n 32 --out out/gradflow
    python -m explain gradflow --model path/to/my_models.py:make_bundle --out out/gradflow
    python -m explain gradflow --model shapes_cnn --data my_images/ --n 16 --out out/gradflow
"""

from __future__ import annotations

import argparse
import csv
import io
import time

from explain.cli import _args, _choices, _inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--experiment", choices=["depth"], help="run the depth experiment")
    mode.add_argument(
        "--model",
        metavar="SPEC",
        help=_args.model_help("shapes_cnn or my_models.py:make_bundle; per-layer gradient flow and the Jacobian chain"),
    )
    _inputs.add_data(parser, labels="the loss's labels; without labels the predicted class is differentiated")
    parser.add_argument("--out", type=_args.out_folder, required=True, help="output folder, created when missing")
    parser.add_argument("--max-depth", type=_args.at_least(1), default=30, help="deepest network of the experiment")
    parser.add_argument("--width", type=_args.at_least(1), default=64, help="hidden units per layer of the experiment")
    parser.add_argument("--batch", type=_args.at_least(1), default=128, help="samples of the depth experiment")
    parser.add_argument(
        "--steps", type=_args.at_least(0), default=5, help="optax (Adam) steps before the second measurement"
    )
    parser.add_argument("--learning-rate", type=_args.positive_float, default=1e-2, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the experiment")
    parser.add_argument(
        "--activations",
        type=_args.names_from(_choices.DEPTH_ACTIVATIONS),
        default="sigmoid,tanh,relu",
        help=f"comma-separated subset of {','.join(_choices.DEPTH_ACTIVATIONS)}",
    )
    parser.add_argument(
        "--inits",
        type=_args.names_from(_choices.DEPTH_INITS),
        default="normal,glorot,he",
        help=f"comma-separated subset of {','.join(_choices.DEPTH_INITS)}",
    )
    parser.add_argument("--n", type=_args.at_least(1), default=32, help="inputs for --model: the first N")
    _args.add_memory_budget(parser)


def _run_depth(args) -> int:
    from explain.primer import chain_rule, depth

    t0 = time.perf_counter()
    rows = depth.depth_experiment(
        max_depth=args.max_depth,
        activations=args.activations,
        inits=args.inits,
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
    import numpy as np

    import explain.gradflow as gf
    from explain import specs
    from explain.io import atomic_write_text

    bundle = specs.resolve(args.model)
    if bundle.model.tap is None:
        try:
            bundle.model.check_layer("")  # the library's "no layers" message, saying why and what to do
        except ValueError as e:
            raise _args.UsageError(f"gradflow needs the model's layers: {e}") from None
    inputs = _inputs.load_inputs(args, bundle, command="gradflow", limit=args.n)
    x, y = inputs.x, inputs.labels
    opts = {"memory_budget": args.memory_budget, "show_progress": True}
    flow = gf.gradient_flow(bundle.model, x, labels=y, **opts)
    chain = gf.jacobian_chain(bundle.model, x, labels=y, **opts)
    rows = flow.rows()
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path = atomic_write_text(args.out / f"{bundle.stem}_gradflow.csv", buf.getvalue())
    print(f"{bundle.name}: gradient of {flow.target_name} over {len(x)} inputs ({inputs.source})")
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
    _inputs.check_data_args(args)
    if args.experiment and args.data is not None:
        raise _args.UsageError("--data is for --model; the depth experiment makes its own data")
    return _run_depth(args) if args.experiment else _run_model(args)
