"""Run an attack on a batch for one ε or a list of ε: the public FGSM, BIM and PGD.

Input is validated and labels resolved before anything compiles (see
:func:`explain.gradients.prepare`). Labels default to the model's own
predictions, which avoids label leaking (Kurakin et al. 2017): the true label
is not an input of the attack unless ``labels=`` is given, and every result
states its ``label_source``. The number of classes is the model's
(``model.num_outputs``), never inferred from the labels of the batch.

A list of ε costs one compiled function: ε is traced, per example ``(N,)``.
``ε = 0`` is answered without running the attack (the clean point is the only
point of the ball).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from explain.adversarial import attacks as A
from explain.chunking import chunk_size_for, map_batches
from explain.gradients import prepare
from explain.model import Model, as_model

LabelSource = Literal["predictions", "labels", "targets"]
_BUDGET_BYTES = 1 << 29
_ACT_FACTOR = 64  # activations + their gradients per input byte: a generous bound for small CNNs

REGRESSION_MSG = (
    "adversarial attacks here need a classification model (logits over classes) to build the cross-entropy; "
    "model {name!r} is a regression model (output_kind='regression')"
)
DEFAULT_ATTACK = A.AttackConfig()


class AttackResult(NamedTuple):
    """One ε of an attack on a batch of ``N`` examples.

    Attributes:
      eps: the budget ε.
      raw: ``(N, ...)`` the attack's point before clipping into the input range
        (FGSM's ``x + ε·sign(∇J)``; iterative attacks stay in range, so raw equals clipped).
      clipped: ``(N, ...)`` adversarials inside the ε-ball and the input range.
      success: ``(N,)`` bool: untargeted, prediction ≠ label; targeted, prediction = target.
      logits_clean, logits_adv: ``(N, K)`` before and after.
      norms: ``(N,)`` ‖clipped − x‖ in the attack's norm.
      loss_trace: ``(T,)`` mean objective J over the batch per iterate.
    """

    eps: float
    raw: jax.Array | None
    clipped: jax.Array | None
    success: jax.Array
    logits_clean: jax.Array
    logits_adv: jax.Array
    norms: jax.Array
    loss_trace: jax.Array


class SweepResult(NamedTuple):
    """An attack over a list of ε: ``results[i]`` is for ``eps[i]``.

    ``labels`` are the ``(N,)`` classes attacked (away from, or towards when
    ``targeted``); ``label_source`` says where they came from;
    ``value_range`` is the range adversarials were clipped to (``None``: not clipped).
    """

    eps: tuple[float, ...]
    results: tuple[AttackResult, ...]
    labels: jax.Array
    label_source: LabelSource
    targeted: bool
    config: A.AttackConfig
    value_range: tuple[float, float] | None


def check_eps(eps: Any) -> tuple[float, ...]:
    """A scalar or a list of budgets as floats; raises on negative, NaN or inf."""
    values = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected eps as a number or a non-empty list of numbers, got {eps!r}")
    for e in values:
        if not np.isfinite(e) or e < 0:
            raise ValueError(f"expected eps >= 0 (finite), got {float(e)!r}")
    return tuple(float(e) for e in values)


@functools.cache
def _jit_apply(apply):
    return jax.jit(apply)


def predict(model: Model, x: jax.Array, batch: int) -> jax.Array:
    """Logits ``(N, K)``, ``batch`` examples per compiled call."""
    fwd = _jit_apply(model.apply)
    return map_batches(lambda xc: fwd(model.params, xc), x, batch=batch)


def resolve_labels(
    model: Model | Any, x: Any, *, labels: Any = None, targets: Any = None, batch_size: int | None = None
) -> tuple[Model, jax.Array, Any, jax.Array, jax.Array, LabelSource, bool, int]:
    """Validates everything before compiling the attack.

    Returns ``(model, x, loss_fn, labels, logits_clean, label_source, targeted, batch)``.

    Raises:
      ValueError: a regression model; both ``labels`` and ``targets``; labels or
        targets out of ``range(model.num_outputs)`` or of the wrong shape; bad ``x``.
    """
    model = as_model(model)
    if model.output_kind != "classification":
        raise ValueError(REGRESSION_MSG.format(name=model.name))
    if labels is not None and targets is not None:
        raise ValueError("give labels= (untargeted attack) or targets= (targeted attack), not both")
    x = model.input_spec.validate(x)
    n = x.shape[0]
    batch = batch_size or chunk_size_for(n, _ACT_FACTOR * math.prod(x.shape[1:]) * x.dtype.itemsize, _BUDGET_BYTES)
    if batch < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch}")
    given = targets if targets is not None else labels
    if given is not None:  # checked (shape, integer dtype, 0 <= c < K) before any forward pass
        _, x, loss_fn, lab, _ = prepare(model, x, "loss", given)
    logits = predict(model, x, batch)
    if given is None:
        _, x, loss_fn, lab, _ = prepare(model, x, "loss", np.asarray(jnp.argmax(logits, axis=1)))
    source: LabelSource = "targets" if targets is not None else "labels" if labels is not None else "predictions"
    return model, x, loss_fn, lab, logits, source, targets is not None, batch


def _key_data(key: Any, n: int) -> jax.Array:
    if key is None:
        raise ValueError("a randomised attack (random_start=True) needs an explicit key=jax.random.key(...)")
    if not jnp.issubdtype(jnp.asarray(key).dtype if not isinstance(key, jax.Array) else key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    return jax.random.key_data(jax.random.split(key, n))


def attack_batch(
    model: Model,
    x: jax.Array,
    loss_fn: Any,
    labels: jax.Array,
    eps: jax.Array,
    *,
    config: A.AttackConfig,
    targeted: bool,
    key: Any,
    batch: int,
) -> A.PureResult:
    """The attack on already-validated input, ``eps`` per example ``(N,)``; restarts keep the worst case."""
    run = A.compiled_attack(model.apply, loss_fn, config, targeted, model.input_spec.value_range)
    randomised = config.kind == "pgd" and config.random_start
    n = x.shape[0]

    def chunk(xc, lc, ec, kc):
        return run(model.params, xc, lc, ec, jax.random.wrap_key_data(kc))

    best = None
    for r in range(config.restarts if randomised else 1):
        kd = _key_data(jax.random.fold_in(key, r) if randomised else jax.random.key(0), n)
        res = A.PureResult(*map_batches(chunk, x, labels, eps, kd, batch=batch))
        best = res if best is None else A.merge_restarts(best, res, labels, targeted=targeted)
    return best


def sweep(
    model: Model | Any,
    x: Any,
    eps: Sequence[float] | float,
    *,
    config: A.AttackConfig = DEFAULT_ATTACK,
    key: Any = None,
    labels: Any = None,
    targets: Any = None,
    batch_size: int | None = None,
    keep_inputs: bool = True,
    progress: bool = False,
) -> SweepResult:
    """Runs one attack at every ε of a list, compiled once.

    Args:
      model: a classification :class:`~explain.model.Model` (or a bundle).
      x: ``(N, *input_spec.shape)`` clean inputs.
      eps: budgets ε ≥ 0 in the attack's norm (pixel units of ``x``).
      config: see :class:`~explain.adversarial.attacks.AttackConfig`.
      key: PRNG key, required when the attack has a random start.
      labels: ``(N,)`` true classes to move away from; default the model's predictions.
      targets: ``(N,)`` classes (or one int) to move towards: a targeted attack.
      batch_size: examples per compiled call (default from a 512 MiB budget).
      keep_inputs: ``False`` drops ``raw``/``clipped`` (saves memory in long sweeps).
      progress: a progress bar over ε.

    Returns:
      :class:`SweepResult`.

    Raises:
      ValueError: ε < 0, unknown norm, targets/labels out of range, a regression model.

    Example:
      >>> s = sweep(m, x, [0, 2/255, 8/255], config=AttackConfig("pgd", steps=20), key=jax.random.key(0))
      >>> [float(r.success.mean()) for r in s.results]
    """
    eps_list = check_eps(eps)
    if not isinstance(config, A.AttackConfig):
        raise TypeError(f"expected config to be an AttackConfig, got {type(config).__name__}")
    if not config.keep_best:
        raise ValueError("sweep needs AttackConfig(keep_best=True): the reported iterate is the best one kept")
    if config.kind == "pgd" and config.random_start and key is None:
        raise ValueError("a randomised attack (random_start=True) needs an explicit key=jax.random.key(...)")
    if targets is not None and np.ndim(targets) == 0 and isinstance(targets, (int, np.integer)):
        targets = np.full((np.shape(x)[0],), int(targets))
    model, x, loss_fn, lab, logits, source, targeted, batch = resolve_labels(
        model, x, labels=labels, targets=targets, batch_size=batch_size
    )
    results = []
    for e in tqdm(eps_list, desc=f"{config.kind}-{config.norm}", disable=not progress, leave=False):
        # ε = 0 runs the same compiled attack: the check "accuracy at ε = 0 equals
        # clean accuracy" then tests the attack code instead of a shortcut.
        res = attack_batch(
            model, x, loss_fn, lab, jnp.full((x.shape[0],), e, x.dtype),
            config=config, targeted=targeted, key=key, batch=batch,
        )  # fmt: skip
        success, norms = A.summarise(x, res.x_adv, res.outputs, lab, norm=config.norm, targeted=targeted)
        results.append(
            AttackResult(
                eps=e,
                raw=res.raw if keep_inputs else None,
                clipped=res.x_adv if keep_inputs else None,
                success=success,
                logits_clean=logits,
                logits_adv=res.outputs,
                norms=norms,
                loss_trace=res.trace.mean(axis=0),
            )
        )
    return SweepResult(tuple(eps_list), tuple(results), lab, source, targeted, config, model.input_spec.value_range)


def fgsm(
    model: Model | Any,
    x: Any,
    *,
    eps: float,
    labels: Any = None,
    targets: Any = None,
    norm: A.Norm = "linf",
    batch_size: int | None = None,
) -> AttackResult:
    """FGSM (Goodfellow et al. 2015): ``x_adv = clip(x + ε·sign(∇ₓL(x, y)))``; targeted: ``x − ε·sign(∇ₓL(x, t))``.

    ``norm="l2"`` gives FGM, ``x + ε·∇L/‖∇L‖₂``. Labels default to predictions.
    See :func:`sweep` for the arguments and errors.
    """
    cfg = A.AttackConfig("fgsm", norm=norm, steps=1, random_start=False)
    return sweep(model, x, [eps], config=cfg, labels=labels, targets=targets, batch_size=batch_size).results[0]


def bim(
    model: Model | Any,
    x: Any,
    *,
    eps: float,
    steps: int = 10,
    rel_step_size: float | None = None,
    labels: Any = None,
    targets: Any = None,
    norm: A.Norm = "linf",
    batch_size: int | None = None,
) -> AttackResult:
    """BIM / iterative FGSM (Kurakin et al. 2017): PGD from ``x`` itself, no random start.

    Step ``α = rel_step_size·ε``, default ``2.5·ε/steps``. See :func:`sweep`.
    """
    cfg = A.AttackConfig("pgd", norm=norm, steps=steps, rel_step_size=rel_step_size, random_start=False)
    return sweep(model, x, [eps], config=cfg, labels=labels, targets=targets, batch_size=batch_size).results[0]


def pgd(
    model: Model | Any,
    x: Any,
    *,
    eps: float,
    key: Any,
    steps: int = 10,
    restarts: int = 1,
    rel_step_size: float | None = None,
    labels: Any = None,
    targets: Any = None,
    norm: A.Norm = "linf",
    batch_size: int | None = None,
) -> AttackResult:
    """PGD (Madry et al. 2018) under L∞ or L2 with a random start and restarts.

    ``x_{t+1} = x + Π_ε(clip(x_t + α·d(∇J)) − x)``, ``α = rel_step_size·ε``
    (default ``2.5·ε/steps``: Madry et al.'s convention, which lets a path
    cross the ball). The best iterate per example is kept, ranked by (success,
    loss), and never one whose loss is below the clean loss; restarts keep the
    worst case per example. See :func:`sweep`.

    Example:
      >>> r = pgd(m, x, eps=8 / 255, key=jax.random.key(0), steps=20)
      >>> float(r.success.mean())
    """
    cfg = A.AttackConfig(
        "pgd", norm=norm, steps=steps, rel_step_size=rel_step_size, random_start=True, restarts=restarts
    )
    return sweep(model, x, [eps], config=cfg, key=key, labels=labels, targets=targets, batch_size=batch_size).results[0]
