"""Parity with Captum on the same shapes_cnn weights: ``python benchmarks/captum_parity.py [--n 32] [--repeats 3]``.

Needs the optional requirements (``benchmarks/requirements-optional.txt``: torch 2.13.0 CPU,
captum 0.9.0) in a separate virtual environment; without them it prints why and exits 0.

The PyTorch twin is :func:`captum_crosscheck.torch_twin` (its logits match ours to 1e-5 in
float64). On the same ``--n`` test images, targets = our predictions, both sides compute:

=================  ======================================  ===========================================
method             ours                                    Captum
=================  ======================================  ===========================================
saliency           ``vanilla_gradient``                    ``Saliency(abs=False)``
input × gradient   ``gradient_x_input``                    ``InputXGradient``
IG                 ``integrated_gradients`` (zero, G–L 50)  ``IntegratedGradients`` (zero, gausslegendre 50)
SmoothGrad         ``smoothgrad`` (25 samples, σ = 0.15)   ``NoiseTunnel(Saliency)``, fed OUR noise
Guided Backprop    ``guided_backprop``                     ``GuidedBackprop``
Deconvnet          ``deconvnet``                           ``Deconvolution``
Grad-CAM           ``grad_cam`` (block4, bilinear)         ``LayerGradCam(convs[3])`` + ``interpolate``
occlusion          ``occlusion`` (8×8, stride 4, 0)        ``Occlusion`` (same; 15 windows per call)
FGSM, PGD-10       ``fgsm``, ``pgd_core`` (last iterate)   ``FGSM``, ``PGD`` (no random start, zero_thresh 0)
=================  ======================================  ===========================================

Making the two sides compute the same thing (each adapter acts on the twin's forward pass through
a ``TorchFunctionMode``; the twin's code is not copied):

* The twin calls ``torch.relu``; Captum's Guided Backprop and Deconvolution only hook ``nn.ReLU``
  modules, so the k-th ``torch.relu`` call of a forward pass is routed to the k-th of five
  ``nn.ReLU`` modules attached to the twin.
* SmoothGrad: NoiseTunnel draws ``torch.normal(0, σ)`` once for all ``n × samples`` rows (row
  ``i·S + s`` is sample ``s`` of image ``i``); that draw returns our noise,
  ``σ · N(0, 1)(fold_in(fold_in(key, s), i))``, so both average the same noisy gradients.
* Grad-CAM: our ``block4`` is ``relu(conv4(x))``, Captum's layer is the fourth of those ``nn.ReLU``
  modules (not ``convs[3]``: that is the pre-ReLU map), with ``relu_attributions=True``.
* Deconvnet's max-pool switches (:mod:`explain.saliency.guided`): ``max_pool2d`` routes to the
  first maximum as we do, but the twin's global ``amax`` splits among ties; the row "deconvnet,
  switched amax" replaces it with a first-maximum ``amax`` on the Captum side too (like with like),
  the row "deconvnet" compares with Captum as it is.

Columns: relative L2 ``‖ours - captum‖ / ‖captum‖`` over the whole batch (for attacks, of the
perturbations), its target, warm seconds (median of ``--repeats`` calls, same process, after
the cold first call), their ratio ours / Captum, cold first-call seconds (ours includes
compilation; the persistent compilation cache is whatever the environment sets), and the mean
deletion AUC (:func:`explain.metrics.deletion`, defaults) of our map and of Captum's map fed to
our metric; below the table, the methods ordered by each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import captum.attr as cattr
    import captum.robust
    import torch
    from torch import nn
    from torch.overrides import TorchFunctionMode
except ImportError as e:  # optional benchmark dependency
    torch = None
    TorchFunctionMode = object
    _MISSING = e

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import explain.adversarial as adv  # noqa: E402
import explain.saliency as sal  # noqa: E402
import models  # noqa: E402
from benchmarks.captum_crosscheck import torch_twin  # noqa: E402
from explain import runtime  # noqa: E402
from explain.adversarial.attacks import AttackConfig, pgd_core  # noqa: E402
from explain.metrics import deletion  # noqa: E402

TARGET = 1e-3  # relative L2 of the acceptance line
STRICT = ("saliency", "input_x_gradient", "integrated_gradients", "guided_backprop", "deconvnet", "grad_cam")
N_RELUS = 5  # the twin's torch.relu calls per forward pass: four conv blocks and fc
NOISE_LEVEL, NOISE_SAMPLES = 0.15, 25
IG_STEPS = 50
WINDOW, STRIDES = (8, 8, 3), (4, 4, 3)
warnings.filterwarnings("ignore", category=UserWarning, module="captum")  # "setting hooks", "requires_grad set"
_pgd = jax.jit(pgd_core, static_argnums=0, static_argnames=("config", "value_range"))


class _FirstMax(torch.autograd.Function if torch else object):
    """``x.amax(dim=(2, 3))`` of ``(N, C, H, W)`` whose backward goes to the first maximum (row-major)."""

    @staticmethod
    def forward(ctx, x):
        flat = x.flatten(2)
        idx = flat.argmax(dim=2, keepdim=True)  # torch.argmax returns the first maximal index
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        return flat.gather(2, idx)[..., 0]

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        out = torch.zeros((*ctx.shape[:2], ctx.shape[2] * ctx.shape[3]), dtype=g.dtype)
        return out.scatter_(2, idx, g[..., None]).reshape(ctx.shape)


class TwinAdapter(TorchFunctionMode):
    """Inside ``with``: the k-th ``torch.relu`` of a forward pass runs ``relus[k]`` (an ``nn.ReLU`` Captum can
    hook), ``torch.normal`` returns ``noise`` (NoiseTunnel's one draw), and with ``first_max`` the global
    ``amax`` routes its gradient to the first maximum."""

    def __init__(self, twin, *, noise=None, first_max: bool = False):
        super().__init__()
        self.relus, self.noise, self.first_max, self.k = twin.relus, noise, first_max, 0
        self.hook = twin.register_forward_pre_hook(lambda *_: setattr(self, "k", 0))

    def __exit__(self, *exc):
        self.hook.remove()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.relu:
            self.k += 1
            return self.relus[(self.k - 1) % N_RELUS](*args)
        if func is torch.normal and self.noise is not None:
            assert tuple(args[1].shape) == tuple(self.noise.shape), (args[1].shape, self.noise.shape)
            return self.noise.clone()
        if func is torch.Tensor.amax and self.first_max:
            assert tuple(kwargs.get("dim", args[1:2] and args[1])) == (2, 3)
            return _FirstMax.apply(args[0])
        return func(*args, **kwargs)


def relu_twin(variables: dict):
    """:func:`torch_twin` with five ``nn.ReLU`` modules attached for :class:`TwinAdapter` to route to."""
    twin = torch_twin(variables)
    twin.relus = nn.ModuleList(nn.ReLU() for _ in range(N_RELUS))
    return twin


def our_noise(x: np.ndarray, key: jax.Array, sigma: float, samples: int) -> np.ndarray:
    """``(N·S, ...)`` rows ``i·S + s`` = ``σ · N(0, 1)(fold_in(fold_in(key, s), i))``, as :mod:`explain.saliency.smooth`."""

    def one(s, i):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, s), i), x.shape[1:], jnp.float32)

    eps = jax.vmap(lambda i: jax.vmap(lambda s: one(s, i))(jnp.arange(samples)))(jnp.arange(x.shape[0]))
    return np.array(jnp.float32(sigma) * eps).reshape(-1, *x.shape[1:])  # a writable copy for torch


def rel_l2(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30))


def to_numpy(a) -> np.ndarray:
    return a.detach().numpy() if torch is not None and isinstance(a, torch.Tensor) else np.asarray(a)


def seconds(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out) if not isinstance(out, torch.Tensor) else None
    return out, time.perf_counter() - t0


def cold_and_warm(fn: Callable[[], object], repeats: int) -> tuple[np.ndarray, float, float]:
    """``(result, first-call seconds, median of repeats warm seconds)``."""
    out, cold = seconds(fn)
    warm = statistics.median(seconds(fn)[1] for _ in range(repeats))
    return to_numpy(out), cold, warm


def captum_methods(twin, xt, yt, noise: np.ndarray) -> dict[str, Callable[[], object]]:
    """Captum's call of each method on the twin, as the module docstring's table (NHWC maps)."""
    n = xt.shape[0]

    def adapted(fn, **kw):
        def run():
            with TwinAdapter(twin, **kw):
                return fn()

        return run

    def grad_cam():  # the ReLU module of the fourth block: our "block4" (N, C, h, w), channels summed
        cam = cattr.LayerGradCam(twin, twin.relus[3]).attribute(xt, target=yt, relu_attributions=True)
        up = cattr.LayerAttribution.interpolate(cam, tuple(xt.shape[1:3]), "bilinear")  # (N, 1, H, W)
        return up[:, 0, :, :, None].expand(*xt.shape)

    nt = cattr.NoiseTunnel(cattr.Saliency(twin))
    smooth = dict(nt_type="smoothgrad", nt_samples=NOISE_SAMPLES, stdevs=NOISE_LEVEL, target=yt, abs=False)
    return {
        "saliency": lambda: cattr.Saliency(twin).attribute(xt, target=yt, abs=False),
        "input_x_gradient": lambda: cattr.InputXGradient(twin).attribute(xt, target=yt),
        "integrated_gradients": lambda: cattr.IntegratedGradients(twin).attribute(
            xt, baselines=0.0, target=yt, n_steps=IG_STEPS, method="gausslegendre", internal_batch_size=10 * n
        ),
        "smoothgrad": adapted(lambda: nt.attribute(xt, **smooth), noise=torch.from_numpy(noise)),
        "guided_backprop": adapted(lambda: cattr.GuidedBackprop(twin).attribute(xt, target=yt)),
        "deconvnet": adapted(lambda: cattr.Deconvolution(twin).attribute(xt, target=yt)),
        "deconvnet, switched amax": adapted(lambda: cattr.Deconvolution(twin).attribute(xt, target=yt), first_max=True),
        "grad_cam": adapted(grad_cam),
        "occlusion": lambda: cattr.Occlusion(twin).attribute(
            xt, sliding_window_shapes=WINDOW, strides=STRIDES, baselines=0.0, target=yt, perturbations_per_eval=15
        ),
    }


def our_methods(model, x: np.ndarray, labels: np.ndarray, key: jax.Array) -> dict[str, Callable[[], object]]:
    """Our public call of each method, with the options of the module docstring's table."""
    t = dict(target=labels)
    deconv = lambda: sal.deconvnet(model, x, **t).values  # noqa: E731
    return {
        "saliency": lambda: sal.vanilla_gradient(model, x, **t).values,
        "input_x_gradient": lambda: sal.gradient_x_input(model, x, **t).values,
        "integrated_gradients": lambda: sal.integrated_gradients(model, x, steps=IG_STEPS, **t).values,
        "smoothgrad": lambda: (
            sal.smoothgrad(model, x, key=key, n_samples=NOISE_SAMPLES, noise_level=NOISE_LEVEL, **t).values
        ),
        "guided_backprop": lambda: sal.guided_backprop(model, x, **t).values,
        "deconvnet": deconv,
        "deconvnet, switched amax": deconv,
        "grad_cam": lambda: sal.grad_cam(model, x, layer="block4", **t).values,
        "occlusion": lambda: sal.occlusion(model, x, window=WINDOW, strides=STRIDES, baseline_value=0.0, **t).values,
    }


def attacks(b, twin, args) -> list[tuple[str, float, float, float, float, float, str]]:
    """``(name, rel L2 of the perturbations, ours warm, captum warm, ours cold, captum cold, agreement)`` for FGSM
    and PGD. The perturbations are signs of gradients, so float32 rounding flips those of near-zero gradients:
    the agreement says how many elements are equal and how many predictions on the adversarials agree."""
    x = np.array(b.dataset.test.x[: args.attack_n])
    labels = np.asarray(b.model.apply(b.model.params, jnp.asarray(x))).argmax(1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    lo, hi = b.model.input_spec.value_range
    eps, steps = 4 / 255, 10
    ce = nn.CrossEntropyLoss(reduction="none")  # Captum's default -log(p) is wrong on logits (captum_crosscheck)
    fg = captum.robust.FGSM(twin, loss_func=ce, lower_bound=lo, upper_bound=hi)
    pg = captum.robust.PGD(twin, loss_func=ce, lower_bound=lo, upper_bound=hi)
    fg.zero_thresh = pg.fgsm.zero_thresh = args.zero_thresh
    cfg = AttackConfig("pgd", steps=steps, random_start=False, keep_best=False)
    xj, lj = jnp.asarray(x), jnp.asarray(labels)
    pairs = {
        "FGSM": (
            lambda: adv.fgsm(b.model, x, eps=eps, labels=labels).x_adv,
            lambda: fg.perturb(xt, eps, yt),
        ),
        f"PGD-{steps}": (
            lambda: _pgd(b.model.apply, b.model.params, xj, labels=lj, eps=eps, config=cfg, value_range=(lo, hi)).x_adv,
            lambda: pg.perturb(xt, eps, 2.5 * eps / steps, steps, yt, random_start=False),
        ),
    }
    rows = []
    for name, (ours, theirs) in pairs.items():
        a, oc, ow = cold_and_warm(ours, args.repeats)
        c, cc, cw = cold_and_warm(theirs, args.repeats)
        with torch.no_grad():
            pc = twin(torch.from_numpy(c)).numpy().argmax(1)
        po = np.asarray(b.model.apply(b.model.params, jnp.asarray(a))).argmax(1)
        agree = f"elements equal {np.mean(np.abs(a - c) <= 1e-6):.3f}, predictions agree {np.mean(pc == po):.3f}"
        rows.append((f"{name} ({len(x)} images)", rel_l2(a - x, c - x), ow, cw, oc, cc, agree))
    return rows


def allocator() -> str:
    """The process's allocator, shared by both sides: what is preloaded, else glibc with the mallopt values set."""
    pre = os.environ.get("LD_PRELOAD", "")
    tunables = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    tunables |= runtime.tune_malloc() if os.environ.get(runtime.MALLOC_ENV) == "tuned" else {}
    return f"LD_PRELOAD={pre or '-'} {tunables or 'glibc defaults'}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="test images for the attribution methods")
    ap.add_argument("--attack-n", type=int, default=128, help="test images for FGSM and PGD-10")
    ap.add_argument("--repeats", type=int, default=3, help="warm calls per method and side (median)")
    ap.add_argument(
        "--zero-thresh",
        type=float,
        default=0.0,
        help="Captum's FGSM/PGD skip pixels with |gradient| <= this (Captum's default 1e-6; ours has none: 0)",
    )
    ap.add_argument("--methods", nargs="*", default=None, help="a subset of the rows (default: all)")
    ap.add_argument(
        "--malloc",
        choices=runtime.ALLOCATORS,
        default="tuned",
        help="glibc malloc as our entry points tune it (explain.runtime), its defaults, or tcmalloc preloaded "
        "(the script restarts itself with it); process-wide, so PyTorch runs with the same allocator (default: tuned)",
    )
    args = ap.parse_args(argv)
    if torch is None:
        print(f"skipped: torch/captum not installed ({_MISSING}); see benchmarks/requirements-optional.txt")
        return 0
    # tcmalloc: restarts under it (a ValueError names the package where it is missing)
    print(f"malloc: {runtime.use_allocator(args.malloc, [__file__, *(sys.argv[1:] if argv is None else argv)])}")
    b = models.load("shapes_cnn")
    x = np.array(b.dataset.test.x[: args.n])
    labels = np.asarray(b.model.apply(b.model.params, jnp.asarray(x))).argmax(1)
    twin = relu_twin(b.model.params)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    key = jax.random.key(0)
    lo, hi = b.model.input_spec.value_range
    noise = our_noise(x, key, NOISE_LEVEL * (hi - lo), NOISE_SAMPLES)
    ours, theirs = our_methods(b.model, x, labels, key), captum_methods(twin, xt, yt, noise)
    names = [m for m in ours if args.methods is None or m in args.methods]
    print(
        f"shapes_cnn, {len(x)} test images (targets = predictions), {args.repeats} warm repeats; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), captum {captum.__version__}, "
        f"jax {jax.__version__}; allocator: {allocator()}"
    )
    head = (
        f"{'method':<28}{'rel L2':>10}{'target':>8}{'ours s':>9}{'captum s':>10}{'ratio':>7}"
        f"{'ours cold':>11}{'captum cold':>13}{'del AUC ours':>14}{'del AUC captum map':>20}"
    )
    print(head)
    print("-" * len(head))
    auc: dict[str, tuple[float, float]] = {}
    for name in names:
        a, oc, ow = cold_and_warm(ours[name], args.repeats)
        c, cc, cw = cold_and_warm(theirs[name], args.repeats)
        err = rel_l2(a, c)
        base = name.split(",")[0]
        target = TARGET if base in STRICT else None
        flag = "" if target is None else ("ok" if err <= target else "MISS")
        da = float(np.mean(deletion(b.model, x, a, target=labels).auc))
        dc = float(np.mean(deletion(b.model, x, c, target=labels).auc))
        auc[name] = (da, dc)
        tgt = f"{target:.0e}" if target else "-"
        print(
            f"{name:<28}{err:>10.2e}{tgt:>8}{ow:>9.3f}{cw:>10.3f}{ow / cw:>7.2f}{oc:>11.3f}{cc:>13.3f}"
            f"{da:>14.4f}{dc:>20.4f}  {flag}",
            flush=True,
        )
    if args.methods is None or any(m.startswith(("FGSM", "PGD")) for m in args.methods):
        for name, err, ow, cw, oc, cc, agree in attacks(b, twin, args):
            print(f"{name:<28}{err:>10.2e}{'-':>8}{ow:>9.3f}{cw:>10.3f}{ow / cw:>7.2f}{oc:>11.3f}{cc:>13.3f}  {agree}")
    ranked = [m for m in auc if m != "deconvnet, switched amax"]
    order_ours = sorted(ranked, key=lambda m: auc[m][0])
    order_captum = sorted(ranked, key=lambda m: auc[m][1])
    print("deletion AUC order (lower = more faithful), our maps:    " + " < ".join(order_ours))
    print("deletion AUC order (lower = more faithful), Captum maps: " + " < ".join(order_captum))
    print(f"same order: {'yes' if order_ours == order_captum else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
