"""``python -m explain saliency``: attribution maps of a shipped image model as a labelled PNG grid.

Example (writes every method on 4 test images of ``shapes``)::

    python -m explain saliency --model shapes_cnn --n 4 --out grid.png
    python -m explain saliency --model shapes_cnn --n 4 --out ig.png --methods integrated_gradients grad_cam --overlay 0.6
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from explain.saliency.registry import METHODS

    parser.add_argument("--model", default="shapes_cnn", help="a shipped image model (default shapes_cnn)")
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


def run(args: argparse.Namespace) -> int:
    from explain import viz
    from explain.saliency import _common, registry
    from models import load

    _check_args(args)
    bundle = load(args.model)
    if len(bundle.model.input_spec.shape) != 3:
        raise ValueError(
            f"saliency grids need an image model; {args.model!r} takes {bundle.model.input_spec.describe()}"
        )
    test = bundle.dataset.test
    total = len(test.x)
    if args.n > total:
        raise ValueError(f"expected --n <= {total} (the test images of {args.model!r}), got {args.n}")
    if args.n == total and any(registry.get(m).needs_references for m in args.methods):
        needing = [m for m in args.methods if registry.get(m).needs_references]
        raise ValueError(
            f"--n {args.n} leaves no test images for the reference set of {needing}; "
            f"expected --n <= {total - 1} or drop those methods"
        )
    x, y = np.asarray(test.x[: args.n]), np.asarray(test.y[: args.n])
    refs = np.asarray(test.x[args.n : args.n + _MAX_REFERENCES])  # other test images as the reference set
    pred = np.asarray(_common.compiled_forward(bundle.model.apply)(bundle.model.params, x).argmax(1))
    names = bundle.model.class_names or tuple(map(str, range(bundle.model.num_outputs)))
    maps, signed = {}, {}
    key = jax.random.key(args.seed)
    for name in args.methods:
        info = registry.get(name)
        t0 = time.perf_counter()
        a = registry.run(name, bundle, x, target=None, key=method_key(key, name), references=refs)
        maps[name], signed[name] = np.asarray(a.values), info.signed
        print(f"{name:32s} {time.perf_counter() - t0:6.2f} s", file=sys.stderr)
    labels = [f"{names[t]} (pred {names[p]})" for t, p in zip(y, pred)]
    img = viz.grid(x, maps, signed=signed, row_labels=labels, scale=args.scale, alpha=args.overlay)
    path = viz.save_png(img, args.out)
    print(
        f"wrote {path} ({img.width}x{img.height}): rows are true (predicted) class; signed maps use {viz.DIVERGING_CMAP}"
    )
    return 0
