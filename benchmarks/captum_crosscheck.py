"""Cross-check our FGSM and PGD against Captum on the same shapes_cnn weights: ``python benchmarks/captum_crosscheck.py``.

Needs the optional requirements (``benchmarks/requirements-optional.txt``:
torch 2.13.0 CPU, captum 0.9.0) in a separate virtual environment; without
them it prints why and exits 0.

1. Loads the shapes_cnn weights into an equivalent PyTorch module and checks
   that the logits agree to 1e-5 (in float64; float32 is reported beside it).
2. Runs ``captum.robust.FGSM`` and ``captum.robust.PGD`` (no random start, so
   both sides are deterministic) and ours with the same ε, step and steps on
   the same images and labels; reports element agreement of the adversarials,
   agreement of the predictions on them, accuracies, and the time ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import captum.robust
    import torch
    from torch import nn
except ImportError as e:  # optional benchmark dependency
    torch = None
    _MISSING = e

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import explain.adversarial as adv  # noqa: E402
import models  # noqa: E402
from explain.adversarial.attacks import AttackConfig, pgd_core  # noqa: E402

# The public pure PGD core, compiled once: the last iterate without keep-best is Captum's algorithm.
_pgd = jax.jit(pgd_core, static_argnums=0, static_argnames=("config", "value_range"))


def torch_twin(variables: dict, features=(16, 32, 64, 64)):
    """``models.modules.CNN`` in PyTorch, taking NHWC input like the Flax module."""
    p = variables["params"]

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            chans = (3, *features)
            self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(len(features)))
            self.fc = nn.Linear(2 * features[-1], p["fc"]["dense"]["kernel"].shape[1])
            self.head = nn.Linear(p["head"]["kernel"].shape[0], p["head"]["kernel"].shape[1])

        def forward(self, x):
            x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
            for conv in self.convs:
                x = nn.functional.max_pool2d(torch.relu(conv(x)), 2)
            x = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
            return self.head(torch.relu(self.fc(x)))

    twin = Twin()
    t = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731
    with torch.no_grad():
        for i, conv in enumerate(twin.convs):
            blk = p[f"block{i + 1}"]["conv"]
            conv.weight.copy_(t(blk["kernel"]).permute(3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)
            conv.bias.copy_(t(blk["bias"]))
        twin.fc.weight.copy_(t(p["fc"]["dense"]["kernel"]).T)
        twin.fc.bias.copy_(t(p["fc"]["dense"]["bias"]))
        twin.head.weight.copy_(t(p["head"]["kernel"]).T)
        twin.head.bias.copy_(t(p["head"]["bias"]))
    return twin.eval()


def timed(fn, repeats: int = 1):
    fn()  # warm-up (compiles on our side)
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    jax.block_until_ready(out) if not isinstance(out, torch.Tensor) else None
    return out, (time.perf_counter() - t0) / repeats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--eps", type=float, default=4 / 255)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--zero-thresh", type=float, default=None, help="override Captum's zero_thresh (its default 1e-6)")
    args = ap.parse_args(argv)
    if torch is None:
        print(f"skipped: torch/captum not installed ({_MISSING}); see benchmarks/requirements-optional.txt")
        return 0
    b = models.load("shapes_cnn")
    x, y = np.array(b.dataset.test.x[: args.n]), np.array(b.dataset.test.y[: args.n])
    twin = torch_twin(b.model.params)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        logits_t = twin(xt).numpy()
    logits_j = np.asarray(b.model.apply(b.model.params, jnp.asarray(x)))
    diff = float(np.abs(logits_t - logits_j).max())
    rel = diff / float(np.abs(logits_j).max())
    print(
        f"logits max |torch - jax| = {diff:.2e}, relative to max |logit| {rel:.2e} ({'ok' if diff <= 1e-5 or rel <= 1e-6 else 'MISMATCH'})"
    )
    # float32 sums in another order differ by ~1e-7 of the logits' size (~40 here); in float64 the
    # two implementations must agree to 1e-5 absolute, which shows the twin is the same function.
    with torch.no_grad():
        logits_t64 = torch_twin(b.model.params).double()(torch.from_numpy(x.astype(np.float64))).numpy()
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), b.model.params)
        logits_j64 = np.asarray(b.model.apply(p64, jnp.asarray(x, jnp.float64)))
    diff64 = float(np.abs(logits_t64 - logits_j64).max())
    print(f"float64 logits max |torch - jax| = {diff64:.2e} ({'ok' if diff64 <= 1e-5 else 'MISMATCH'}, target 1e-5)")
    labels = logits_j.argmax(1)
    yt = torch.from_numpy(labels.astype(np.int64))
    lo, hi = b.model.input_spec.value_range
    step = 2.5 * args.eps / args.steps

    # Captum's default loss is -log(output[target]), which assumes probabilities: on logits it
    # gives NaN gradients wherever the logit is negative and leaves those pixels untouched.
    # Both sides use the cross-entropy of the logits here.
    ce = nn.CrossEntropyLoss(reduction="none")
    fg = captum.robust.FGSM(twin, loss_func=ce, lower_bound=lo, upper_bound=hi)
    pg = captum.robust.PGD(twin, loss_func=ce, lower_bound=lo, upper_bound=hi)
    if args.zero_thresh is not None:  # Captum skips pixels whose |gradient| <= zero_thresh (default 1e-6)
        fg.zero_thresh = args.zero_thresh
        pg.fgsm.zero_thresh = args.zero_thresh
    xc_f, t_cf = timed(lambda: fg.perturb(xt, args.eps, yt))
    ours_f, t_jf = timed(lambda: adv.fgsm(b.model, x, eps=args.eps, labels=labels).x_adv)
    xc_p, t_cp = timed(lambda: pg.perturb(xt, args.eps, step, args.steps, yt, random_start=False))
    # last iterate, no keep-best, no random start: the same algorithm as Captum's
    cfg = AttackConfig("pgd", steps=args.steps, random_start=False, keep_best=False)
    xj, lj = jnp.asarray(x), jnp.asarray(labels)
    ours_p, t_jp = timed(
        lambda: _pgd(b.model.apply, b.model.params, xj, labels=lj, eps=args.eps, config=cfg, value_range=(lo, hi)).x_adv
    )

    def report(name, xc, xo, tc, to):
        xc, xo = xc.detach().numpy(), np.asarray(xo)
        same = float(np.mean(np.abs(xc - xo) <= 1e-6))
        pc = twin(torch.from_numpy(xc)).detach().numpy().argmax(1)
        po = np.asarray(b.model.apply(b.model.params, jnp.asarray(xo))).argmax(1)
        print(
            f"{name}: elements equal {same:.4f}, max |Δ| {np.abs(xc - xo).max():.2e}, predictions agree {np.mean(pc == po):.4f}, "
            f"accuracy captum {np.mean(pc == y):.4f} ours {np.mean(po == y):.4f}; time captum {tc:.3f}s ours {to:.3f}s, ratio {tc / to:.2f}x"
        )

    print(
        f"{len(x)} images, eps {args.eps:.5f}, PGD {args.steps} steps of {step:.5f}, labels = predictions, torch threads {torch.get_num_threads()}"
    )
    report("FGSM", xc_f, ours_f, t_cf, t_jf)
    report(f"PGD-{args.steps}", xc_p, ours_p, t_cp, t_jp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
