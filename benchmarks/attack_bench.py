"""PGD cost as a ratio to k gradient passes, and against Captum: ``python benchmarks/attack_bench.py``.

On shapes_cnn at one batch (default 256 test images), measured in one run
after warm-up (compile time printed separately):

* ``t_grad``: one input gradient of the attack's objective (the cross-entropy against
  the labels) for the batch: the public pure primitive
  :func:`explain.gradients.target_and_grad` under one ``jax.jit``;
* ``t_pgd(k)``: the public :func:`explain.adversarial.pgd` with k steps (random start,
  keep-best: k gradients + 2 forwards, chunked by the default memory budget, validation included);
* ratio ``t_pgd(k) / (k · t_grad)``, target ≤ 1.2;
* ``t_apgd(k)``: the public :func:`explain.adversarial.apgd` (APGD-CE and APGD-DLR, k steps:
  k gradients + 2 forwards, checkpoints included); ratio ``t_apgd(k) / (k · t_grad)``, target ≤ 1.2;
* the public :func:`explain.adversarial.fgsm` against one gradient pass;
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
from explain import adversarial  # noqa: E402
from explain.adversarial.attacks import objective  # noqa: E402
from explain.gradients import target_and_grad  # noqa: E402

_grad = jax.jit(target_and_grad, static_argnums=0)  # the chain-rule primitive, compiled once per model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eps", type=float, default=4 / 255)
    args = ap.parse_args(argv)
    b = models.load("shapes_cnn")
    model = b.model
    x_host = np.asarray(b.dataset.test.x[: args.batch])
    y = np.asarray(b.dataset.test.y[: args.batch])
    x = jnp.asarray(x_host)
    loss = objective(labels=jnp.asarray(y))  # J = cross-entropy against the labels: what the attacks ascend

    def grad():
        return _grad(model.apply, model.params, x, loss)

    compile_s = call_seconds(grad)
    print(
        f"shapes_cnn, batch {args.batch}, {jax.device_count()} {jax.default_backend()} device(s); grad compile {compile_s:.2f}s"
    )
    t_grad = median_seconds(grad, args.repeats)
    print(f"one gradient pass: {t_grad * 1e3:.1f} ms")

    def fgsm():
        return adversarial.fgsm(model, x_host, eps=args.eps, labels=y).x_adv

    call_seconds(fgsm)
    t_fg = median_seconds(fgsm, args.repeats)
    print(f"FGSM: {t_fg * 1e3:.1f} ms = {t_fg / t_grad:.2f} gradient passes (1 gradient + 1 forward)")
    ours = {}
    for k in args.steps:

        def run_pgd(k=k):
            return adversarial.pgd(model, x_host, eps=args.eps, steps=k, key=jax.random.key(0), labels=y).x_adv

        first_s = call_seconds(run_pgd)
        t = median_seconds(run_pgd, args.repeats)
        ours[k] = t
        print(
            f"PGD-{k}: {t:.3f} s (first call incl. compile {first_s:.2f}s); ratio to {k} gradient passes: {t / (k * t_grad):.3f} (target <= 1.2)"
        )
    for k in args.steps:
        for loss in ("ce", "dlr"):

            def run_apgd(k=k, loss=loss):
                return adversarial.apgd(
                    model, x_host, eps=args.eps, steps=k, key=jax.random.key(0), labels=y, loss=loss
                ).x_adv

            first_s = call_seconds(run_apgd)
            t = median_seconds(run_apgd, args.repeats)
            print(
                f"APGD-{loss.upper()}-{k}: {t:.3f} s (first call incl. compile {first_s:.2f}s); "
                f"ratio to {k} gradient passes: {t / (k * t_grad):.3f} (target <= 1.2)"
            )
    try:
        import captum.robust
        import torch

        from benchmarks.captum_crosscheck import torch_twin
    except ImportError as e:
        print(f"Captum comparison skipped: torch/captum not installed ({e}); see benchmarks/requirements-optional.txt")
        return 0
    vr = model.input_spec.value_range
    twin = torch_twin(model.params)
    xt = torch.from_numpy(np.array(x_host))
    yt = torch.from_numpy(y.astype(np.int64))
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
