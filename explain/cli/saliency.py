"""``python -m explain saliency``: attribution maps of an image model as a labelled PNG grid.

Examples (every method on 4 test images of ``shapes``; a user's model from a factory)::

    python -m explain saliency --model shapes_cnn --n 4 --out grid.png
    python -m explain saliency --model shapes_cnn --n 4 --out ig.png --methods integrated_gradients grad_cam --overlay 0.6
    python -m explain saliency --model path/to/my_models.py:make_bundle --methods vanilla_gradient smoothgrad
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from explain.cli import _args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from explain.saliency.registry import METHODS

    _args.add_model(parser, default="shapes_cnn", example="shapes_cnn or my_models.py:make_bundle")
    parser.add_argument("--n", type=int, default=4, help="test images to explain (default 4)")
    parser.add_argument("--out", default="grid.png", help="PNG path, written atomically (default grid.png)")
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), metavar="METHOD", help=f"default: all of {', '.join(METHODS)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed for noisy methods (default 0)")
    parser.add_argument(
        "--overlay", type=float, default=None, metavar="ALPHA", help="blend maps over the input, ALPHA in [0, 1]"
    )
    parser.add_argument("--scale", type=int, default=2, help="pixel upscaling of each cell, >= 1 (default 2)")
    _args.add_memory_budget(parser)


_MAX_REFERENCES = 64


def _check_args(args: argparse.Namespace) -> None:
    """Everything checkable without the model, before it is loaded."""
    from explain.saliency import registry

    for name in args.methods:
        registry.get(name)  # unknown names raise, listing the known ones
    if args.n < 1:
        raise ValueError(f"expected --n >= 1, got {args.n}")
    if args.scale < 1:
        raise ValueError(f"expected --scale >= 1, got {args.scale}")
    if args.overlay is not None and not 0.0 <= args.overlay <= 1.0:
        raise ValueError(f"expected --overlay in [0, 1], got {args.overlay}")


def method_key(key: jax.Array, name: str) -> jax.Array:
    """The key of method ``name``: folded with its index in the registry, so a method's map does not
    depend on which other methods were asked for, nor in which order."""
    from explain.saliency import registry

    return jax.random.fold_in(key, list(registry.METHODS).index(name))


def _row_labels(model, class_names, y: np.ndarray, outputs: np.ndarray) -> list[str]:
    if model.output_kind != "classification":
        return [f"y {float(t):.3g} (output {float(o):.3g})" for t, o in zip(y, outputs[:, 0])]
    names = class_names or tuple(map(str, range(model.num_outputs)))
    return [f"{names[int(t)]} (pred {names[int(p)]})" for t, p in zip(y, outputs.argmax(1))]


def run(args: argparse.Namespace) -> int:
    from explain import specs, viz
    from explain.gradients import forward
    from explain.saliency import registry

    _check_args(args)
    bundle = specs.resolve(args.model)
    model = bundle.model
    if len(model.input_spec.shape) != 3:
        raise ValueError(f"saliency grids need an image model; {args.model!r} takes {model.input_spec.describe()}")
    test = bundle.split("test", command="saliency")
    total = len(test.x)
    if args.n > total:
        raise ValueError(f"expected --n <= {total} (the test images of {args.model!r}), got {args.n}")
    needing = [m for m in args.methods if registry.get(m).needs_references]
    if args.n == total and needing:
        raise ValueError(
            f"--n {args.n} leaves no test images for the reference set of {needing}; "
            f"expected --n <= {total - 1} or drop those methods"
        )
    x, y = np.asarray(test.x[: args.n]), np.asarray(test.y[: args.n])
    refs = np.asarray(test.x[args.n : args.n + _MAX_REFERENCES])  # other test images as the reference set
    outputs = forward(model, x, memory_budget=args.memory_budget)
    maps, signed = {}, {}
    key = jax.random.key(args.seed)
    for name in args.methods:
        t0 = time.perf_counter()
        a = registry.call(
            name,
            model,
            x,
            target=None,
            key=method_key(key, name),
            references=refs,
            memory_budget=args.memory_budget,
            show_progress=True,
        )
        maps[name], signed[name] = np.asarray(a.values), registry.get(name).signed
        print(f"{name:32s} {time.perf_counter() - t0:6.2f} s", file=sys.stderr)
    labels = _row_labels(model, bundle.class_names, y, np.asarray(outputs))
    img = viz.grid(x, maps, signed=signed, row_labels=labels, scale=args.scale, alpha=args.overlay)
    path = viz.save_png(img, args.out)
    print(
        f"wrote {path} ({img.width}x{img.height}): rows are true (predicted) class; signed maps use {viz.DIVERGING_CMAP}"
    )
    return 0
