"""PGD cost as a ratio to k gradient passes, and against Captum: ``python benchmarks/attack_bench.py``.

On shapes_cnn at one batch (default 256 test images), measured in one run
after warm-up (compile time printed separately):

* ``t_grad``: one input gradient of the loss for the batch (the chain-rule primitive);
* ``t_pgd(k)``: our PGD-k (random start, keep-best: k gradients + 2 forwards);
* ratio ``t_pgd(k) / (k · t_grad)``, target ≤ 1.2;
* FGSM against one gradient pass;
* when torch and captum are importable (optional requirements), Captum's PGD-k
  on the same weights (see ``captum_crosscheck.py``) and the time ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from benchmarks._timing import call_seconds, median_seconds  # noqa: E402
from explain.adversarial import attacks as A  # noqa: E402
from explain.gradients import _compiled_input_grad, prepare  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eps", type=float, default=4 / 255)
    args = ap.parse_args(argv)
    b = models.load("shapes_cnn")
    x = jnp.asarray(b.dataset.test.x[: args.batch])
    model, x, fn, aux, _ = prepare(b.model, x, "loss", np.asarray(b.dataset.test.y[: args.batch]))
    grad = _compiled_input_grad(model.apply, fn)
    compile_s = call_seconds(lambda: grad(model.params, x, aux))
    print(
        f"shapes_cnn, batch {args.batch}, {jax.device_count()} {jax.default_backend()} device(s); grad compile {compile_s:.2f}s"
    )
    t_grad = median_seconds(lambda: grad(model.params, x, aux), args.repeats)
    print(f"one gradient pass: {t_grad * 1e3:.1f} ms")
    eps = jnp.full((x.shape[0],), args.eps, x.dtype)
    keys = jax.random.split(jax.random.key(0), x.shape[0])
    vr = model.input_spec.value_range
    fg = A.compiled_attack(model.apply, fn, A.AttackConfig("fgsm"), False, vr)
    jax.block_until_ready(fg(model.params, x, aux, eps, keys).x_adv)
    t_fg = median_seconds(lambda: fg(model.params, x, aux, eps, keys).x_adv, args.repeats)
    print(f"FGSM: {t_fg * 1e3:.1f} ms = {t_fg / t_grad:.2f} gradient passes (1 gradient + 1 forward)")
    ours = {}
    for k in args.steps:
        run = A.compiled_attack(model.apply, fn, A.AttackConfig("pgd", steps=k), False, vr)
        compile_s = call_seconds(lambda run=run: run(model.params, x, aux, eps, keys).x_adv)
        t = median_seconds(lambda run=run: run(model.params, x, aux, eps, keys).x_adv, args.repeats)
        ours[k] = t
        print(
            f"PGD-{k}: {t:.3f} s (first call incl. compile {compile_s:.2f}s); ratio to {k} gradient passes: {t / (k * t_grad):.3f} (target <= 1.2)"
        )
    try:
        import captum.robust
        import torch

        from benchmarks.captum_crosscheck import torch_twin
    except ImportError as e:
        print(f"Captum comparison skipped: torch/captum not installed ({e}); see benchmarks/requirements-optional.txt")
        return 0
    twin = torch_twin(model.params)
    xt = torch.from_numpy(np.array(x))
    yt = torch.from_numpy(np.asarray(aux).astype(np.int64))
    pgd = captum.robust.PGD(
        twin, loss_func=torch.nn.CrossEntropyLoss(reduction="none"), lower_bound=vr[0], upper_bound=vr[1]
    )
    for k in args.steps:
        step = 2.5 * args.eps / k
        pgd.perturb(xt, args.eps, step, k, yt, random_start=True)
        t = statistics.median(
            [
                (lambda t0: (pgd.perturb(xt, args.eps, step, k, yt, random_start=True), time.perf_counter() - t0)[1])(
                    time.perf_counter()
                )
                for _ in range(args.repeats)
            ]
        )
        print(
            f"Captum PGD-{k} (torch {torch.__version__}, {torch.get_num_threads()} threads): {t:.3f} s; Captum / ours = {t / ours[k]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
