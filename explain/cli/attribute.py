"""``python -m explain attribute``: one saliency method over a whole dataset, resumable.

Writes into ``--out``: ``shard-00000.npz``, ... (the maps, ``batch-size`` rows each), ``index.parquet`` (one
row per example: its path or row, prediction, probability, target, max |a|, L1, IG's convergence delta,
shard and row; skipped files with their reason), ``manifest.json`` (model, params sha256, method, options,
key, versions, engine, devices) and with ``--heatmaps`` one PNG per example under ``heatmaps/``. Rerun the
same command after a crash or Ctrl-C: only missing or corrupt shards are computed again; other settings in
the same folder are refused, naming what changed. Random methods draw each example by its row number, so
``--batch-size`` and ``--devices`` never change the results.

Exit status: 0 done; 1 bad input (an unreadable or empty source, a CSV missing columns, an option the
method does not take, another run's folder, a Ray address that does not answer, Ray not installed);
2 interrupted (Ctrl-C; rerun to resume), or a malformed command line (argparse's usage error).

Examples (a folder of images, recursively; a memory-mapped .npy; a table; Expected Gradients on 4 devices;
float16 compressed shards with heatmaps; a Ray cluster)::

    python -m explain attribute --model digits_cnn --input photos/ --method integrated_gradients --steps 32 --out runs/ig
    python -m explain attribute --model shapes_cnn --input x.npy --method smoothgrad --n-samples 25 --out runs/sg
    python -m explain attribute --model my_models.py:tabular --input rows.csv --method vanilla_gradient --out runs/vg
    python -m explain attribute --model shapes_cnn --input x.npy --method expected_gradients --references train.npy --devices 4 --out runs/eg
    python -m explain attribute --model shapes_cnn --input photos/ --method integrated_gradients --float16 --compress --heatmaps --out runs/ig16
    python -m explain attribute --model shapes_cnn --input /shared/photos/ --method smoothgrad --engine ray --address 10.0.0.1:6379 --workers 8 --out /shared/runs/sg

``--float16`` and ``--compress`` change the files, so they are settings (a rerun must repeat them);
``--heatmaps`` is not: adding it to a finished run draws the maps from its shards without recomputing.
``--engine ray`` (``pip install flax-explain[ray]``) computes the same shards on Ray Data workers, each
resolving ``--model`` itself; the input and ``--out`` must be at the same path on every node.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from explain.cli import _args, _choices

EXIT_BAD_INPUT = 1
EXIT_INTERRUPTED = 2
_PROG = "python -m explain attribute"


def option(text: str) -> tuple[str, Any]:
    """A ``type=`` validator: ``NAME=VALUE``, the value read as JSON when it parses (``3``, ``0.5``, ``true``,
    ``[1, 2]``) and as a string otherwise (``baseline=blur``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as steps=32, got {text!r}")
    try:
        return name.strip(), json.loads(value)
    except ValueError:
        return name.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_model(parser, example="shapes_cnn or my_models.py:make_bundle")
    parser.add_argument(
        "--input",
        required=True,
        metavar="PATH",
        help="a folder of PNG/JPEG/WebP images (recursively; decoded one shard at a time), .npy (memory-mapped), "
        ".npz, or .csv / .parquet with columns named as the model's features",
    )
    parser.add_argument("--method", required=True, choices=_choices.SALIENCY_METHODS, metavar="NAME", help="method")
    parser.add_argument("--out", type=_args.out_folder, required=True, metavar="DIR", help="the run's folder")
    parser.add_argument(
        "--steps",
        type=_args.at_least(1),
        metavar="N",
        help="path methods' integration steps (default: the method's own)",
    )
    parser.add_argument(
        "--n-samples",
        type=_args.at_least(1),
        metavar="N",
        help="random methods' draws per example (default: the method's own)",
    )
    parser.add_argument(
        "--noise-level",
        type=_args.positive_float,
        metavar="F",
        help="noise σ as a range fraction (default: the method's own)",
    )
    parser.add_argument(
        "--option",
        type=option,
        action="append",
        metavar="NAME=VALUE",
        help="any other option of the method (repeatable), e.g. --option baseline=blur (default: none)",
    )
    parser.add_argument(
        "--target",
        default=None,
        metavar="CLASS",
        help="a class index or name to explain (default: the predicted class)",
    )
    parser.add_argument(
        "--references",
        metavar="PATH",
        help="reference set of expected_gradients / gradient_shap, any --input form (default: none; those two require it)",
    )
    parser.add_argument("--batch-size", type=_args.at_least(1), default=64, metavar="N", help="rows per shard file")
    parser.add_argument(
        "--devices", type=_args.at_least(1), metavar="N", help="local devices sharing each call (default: all of them)"
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of random methods")
    parser.add_argument(
        "--heatmaps",
        action="store_true",
        help="also write heatmaps/ROW.png per example (image models; adding it to a finished run renders the maps "
        "from its shards)",
    )
    parser.add_argument("--float16", action="store_true", help="store the maps as float16 (half the disk)")
    parser.add_argument("--compress", action="store_true", help="compress the shard files (np.savez_compressed)")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process, every local device; ray: a Ray Data stage of workers (pip install flax-explain[ray])",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: the Ray cluster to join, host:port or auto (default: start a local one)",
    )
    parser.add_argument(
        "--workers",
        type=_args.at_least(1),
        metavar="N",
        help="with --engine ray: how many workers (default: one per GPU of the cluster, else one per node)",
    )
    _args.add_memory_budget(parser)
    parser.epilog = (parser.epilog or "") + (
        "\n\nexit status: 0 done; 1 bad arguments or input (a malformed command line, unreadable or empty "
        "source, CSV missing columns, unknown option, another run's folder, an output folder that cannot be "
        "created, a Ray address that does not answer, Ray not installed); 2 interrupted (Ctrl-C: rerun the "
        "same command to resume)"
    )
    # argparse exits 2 on a malformed command line; here 2 means "interrupted, resume", so a batch
    # scheduler can tell a job to retry from a job to fix: bad arguments exit 1 like bad input.
    parser.error = functools.partial(_usage_error, parser)


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.print_usage(sys.stderr)
    parser.exit(1, f"{parser.prog}: error: {message}\n")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    named = {"steps": args.steps, "n_samples": args.n_samples, "noise_level": args.noise_level}
    return {**{k: v for k, v in named.items() if v is not None}, **dict(args.option or [])}


def _target(text: str | None, class_names: Any) -> Any:
    if text is None:
        return None
    if text.lstrip("-").isdecimal():
        return int(text)
    if class_names and text in class_names:
        return list(class_names).index(text)
    raise ValueError(f"expected --target to be a class index or one of {list(class_names or [])}, got {text!r}")


def _run(args: argparse.Namespace) -> int:
    import jax

    from explain import data, specs
    from explain.batch import attribute_dataset
    from explain.saliency import registry

    resolved = specs.resolve(args.model)
    model = resolved.model
    info = registry.get(args.method)
    references = None
    if args.references is not None:
        references = data.load(args.references, model).x
    elif info.needs_references:
        raise ValueError(f"{args.method} draws baselines from a reference set: pass --references PATH")
    if args.engine != "ray" and (args.address is not None or args.workers is not None):
        raise ValueError("--address and --workers go with --engine ray")
    run = attribute_dataset(
        model, args.input, method=args.method, out_dir=args.out, batch_size=args.batch_size,
        target=_target(args.target, model.class_names or resolved.class_names), key=jax.random.key(args.seed),
        references=references, options=_options(args), memory_budget=args.memory_budget, devices=args.devices,
        show_progress=True, spec=args.model, values_dtype="float16" if args.float16 else "float32",
        compress=args.compress, heatmaps=args.heatmaps, engine=args.engine, address=args.address,
        workers=args.workers,
    )  # fmt: skip
    skipped = [s for s in run.index().column("status").to_pylist() if s == "skipped"]
    maps = f", heatmaps in {Path(args.out) / 'heatmaps'}" if args.heatmaps else ""
    print(
        f"{args.method}: {run.n_shards} shard(s), {len(run.completed)} computed, {len(run.skipped)} reused, "
        f"{len(skipped)} file(s) skipped (see index.parquet){maps}",
        file=sys.stderr,
    )
    print(Path(args.out))
    return 0


def run(args: argparse.Namespace) -> int:
    """Exit 0 done, 1 bad input (one ``error:`` line), 2 interrupted (rerun the same command to resume)."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError, ImportError) as e:  # DataError, SpecError, the engine's checks, no Ray
        print(f"{_PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
