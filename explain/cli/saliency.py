"""``python -m explain saliency``: attribution maps of an image model as a labelled PNG grid.

Examples (every method on 4 test images of ``shapes``; your own images; a user's model from a factory)::

    python -m explain saliency --model shapes_cnn --n 4 --out grid.png
    python -m explain saliency --model shapes_cnn --n 4 --out ig.png --methods integrated_gradients grad_cam --overlay 0.6
    python -m explain saliency --model shapes_cnn --data my_images/ --n 8 --methods vanilla_gradient
    python -m explain saliency --model path/to/my_models.py:make_bundle --methods vanilla_gradient smoothgrad
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from explain.cli import _args, _choices, _inputs

_MAX_REFERENCES = 64  # inputs after the first N, as the reference set of expected_gradients and friends
_ID_CHARS = 18  # a --data file name in a row label, shortened to keep the grid narrow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_model(parser, default="shapes_cnn", example="shapes_cnn or my_models.py:make_bundle (an image model)")
    _inputs.add_data(parser)
    parser.add_argument(
        "--n", type=_args.at_least(1), default=4, help="inputs to explain: the first N (all of them when fewer)"
    )
    parser.add_argument("--out", type=_args.out_file(".png"), default="grid.png", help="PNG path, written atomically")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=_choices.SALIENCY_METHODS,
        default=None,
        metavar="METHOD",
        help=f"saliency methods, one column each (default: all of {', '.join(_choices.SALIENCY_METHODS)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed for noisy methods")
    parser.add_argument(
        "--overlay",
        type=_args.unit_interval,
        default=None,
        metavar="ALPHA",
        help="blend maps over the input, ALPHA in [0, 1] (default: maps alone)",
    )
    parser.add_argument("--scale", type=_args.at_least(1), default=2, help="pixel upscaling of each cell, >= 1")
    _args.add_memory_budget(parser)


def method_key(key: Any, name: str) -> Any:
    """The key of method ``name``: folded with its index in the registry, so a method's map does not
    depend on which other methods were asked for, nor in which order."""
    import jax

    from explain.saliency import registry

    return jax.random.fold_in(key, list(registry.METHODS).index(name))


def _short(item_id: str) -> str:
    stem = Path(item_id).stem
    return stem if len(stem) <= _ID_CHARS else stem[: _ID_CHARS - 1] + "…"


def row_labels(model: Any, inputs: _inputs.Inputs, n: int, outputs: Any) -> list[str]:
    """One label per row: the true class (predicted), or the input's file name (predicted) for unlabelled data.

    ``outputs``: the model's ``(N, K)`` outputs at the first ``n`` inputs.
    """
    import numpy as np

    if model.output_kind != "classification":
        shown = [f"output {float(o):.3g}" for o in outputs[:, 0]]
        truth = None if inputs.labels is None else [f"y {float(t):.3g}" for t in np.asarray(inputs.labels[:n])]
    else:
        names = inputs.class_names or tuple(map(str, range(model.num_outputs)))
        shown = [f"pred {names[int(p)]}" for p in outputs.argmax(1)]
        truth = None if inputs.labels is None else [names[int(t)] for t in np.asarray(inputs.labels[:n])]
    if truth is None:
        truth = [_short(i) for i in inputs.ids[:n]] if inputs.ids is not None else [f"#{i}" for i in range(n)]
    return [f"{t} ({s})" for t, s in zip(truth, shown)]


def run(args: argparse.Namespace) -> int:
    _inputs.check_data_args(args)
    import jax
    import numpy as np

    from explain import specs, viz
    from explain.gradients import forward
    from explain.saliency import registry

    methods = args.methods or list(_choices.SALIENCY_METHODS)
    bundle = specs.resolve(args.model)
    model = bundle.model
    _args.require_image(model, args.model, "saliency")
    for name in methods:
        try:
            registry.get(name).check_model(model)  # e.g. Grad-CAM on a model without layers
        except ValueError as e:
            raise _args.UsageError(str(e)) from None
    needing = [m for m in methods if registry.get(m).needs_references]
    inputs = _inputs.load_inputs(args, bundle, command="saliency", limit=args.n + (_MAX_REFERENCES if needing else 0))
    n = min(args.n, len(inputs.x))
    if needing and len(inputs.x) <= n:
        raise _args.UsageError(
            f"{needing} take their reference set from the inputs after the first --n {n}, and {inputs.source} "
            f"has only {len(inputs.x)}; give a smaller --n, more data, or drop those methods"
        )
    if n < args.n:
        print(f"explaining all {n} inputs of {inputs.source} (--n {args.n})", file=sys.stderr)
    x = np.asarray(inputs.x[:n], dtype=np.float32)
    refs = np.asarray(inputs.x[n:], dtype=np.float32) if needing else None
    outputs = np.asarray(forward(model, x, memory_budget=args.memory_budget))
    maps, signed = {}, {}
    key = jax.random.key(args.seed)
    for name in methods:
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
    labels = row_labels(model, inputs, n, outputs)
    img = viz.grid(x, maps, signed=signed, row_labels=labels, scale=args.scale, alpha=args.overlay)
    path = viz.save_png(img, args.out)
    rows = "true (predicted) class" if inputs.labels is not None else "input (predicted class)"
    print(f"wrote {path} ({img.width}x{img.height}): rows are {rows}; signed maps use {viz.DIVERGING_CMAP}")
    return 0
