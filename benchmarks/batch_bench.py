"""Streaming batch attribution against one direct call: ``python benchmarks/batch_bench.py``.

On a shipped model's test set, in one run: the time of one direct method call
on the whole array, then of :func:`explain.batch.attribute_dataset` writing one
shard per batch (compile included in both: each is the first call of its
shapes), then a resume over the finished folder (every shard verified and
skipped), and the ratios. The overhead is the shard and manifest writes plus
per-batch dispatch; the results must agree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from explain.batch import attribute_dataset  # noqa: E402
from explain.saliency import registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes_cnn")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--n", type=int, default=128, help="test samples (default 128)")
    parser.add_argument("--batch", type=int, default=32, help="batch_size (default 32)")
    parser.add_argument("--steps", type=int, default=16, help="IG steps (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="key of the random methods (default 0)")
    args = parser.parse_args()
    bundle = models.load(args.model)
    x = np.asarray(bundle.dataset.test.x[: args.n])
    options = {"steps": args.steps} if "steps" in registry.get(args.method).defaults else {}
    key = jax.random.key(args.seed)

    t0 = time.perf_counter()
    direct = np.asarray(jax.block_until_ready(registry.call(args.method, bundle, x, key=key, **options).values))
    t_direct = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        settings = dict(method=args.method, out_dir=out, batch_size=args.batch, key=key, options=options)
        t0 = time.perf_counter()
        run = attribute_dataset(bundle, x, **settings)
        t_batch = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = attribute_dataset(bundle, x, **settings)
        t_resume = time.perf_counter() - t0
        err = float(np.abs(run.load() - direct).max())
        size = sum(p.stat().st_size for p in Path(out).iterdir())
    print(
        f"{args.model} {args.method} N={len(x)} batch={args.batch} {options} ({run.n_shards} shards, {size / 2**20:.1f} MiB)"
    )
    print(f"direct call     {t_direct:7.2f} s")
    print(f"batch run       {t_batch:7.2f} s   ratio to direct {t_batch / t_direct:5.2f}")
    print(f"resume (no-op)  {t_resume:7.2f} s   skipped {len(again.skipped)}/{again.n_shards}")
    note = ""
    if registry.get(args.method).needs_key:
        note = " (a random method: attribute_dataset draws shard i with fold_in(key, i), so only deterministic methods match)"
    print(f"max |batch - direct| = {err:.2e}{note}")


if __name__ == "__main__":
    main()
