"""Run an attack on a batch for one ε or a list of ε: the public FGSM, BIM and PGD.

Every argument is checked and the batch bound (:func:`bind`: ``x`` validated
once, labels, goal and objective resolved) before anything compiles. Labels
default to the model's own predictions (one chunked forward pass,
:func:`explain.gradients.forward`), which avoids label leaking (Kurakin et al.
2017): the true label is not an input of the attack unless ``labels=`` is
given, and every result states its ``label_source``. The number of classes is
the model's (``model.num_outputs``), never inferred from the labels of the batch.

A list of ε costs one compiled function: ε is traced, per example ``(N,)``.
``ε = 0`` runs the same compiled attack, so "accuracy at ε = 0 equals clean
accuracy" tests the attack code instead of a shortcut. Rows are chunked by
:mod:`explain.chunking` (``memory_budget``); random starts draw per row id, so
results never depend on the chunking.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from explain import chunking
from explain import targets as targets_lib
from explain.adversarial import apgd as apgd_lib
from explain.adversarial import attacks as A
from explain.adversarial import square as square_lib
from explain.adversarial.attacks import Host
from explain.arrays import Batch
from explain.checks import check_key
from explain.gradients import forward, prepare
from explain.model import Model, as_model
from explain.results import Result
from explain.targets import BoundTarget

LabelSource = Literal["predictions", "labels", "goal"]
Budget = float | int  # one ε
Budgets = Sequence[float | int] | np.ndarray  # a grid of ε

REGRESSION_MSG = (
    "adversarial attacks here need a classification model (logits over classes) to build the cross-entropy; "
    "model {name!r} is a regression model (output_kind='regression')"
)
DEFAULT_ATTACK = A.AttackConfig()


# ----------------------------------------------------------------------------- results


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttackResult(Result):
    """One ε of an attack on a batch of ``N`` examples.

    Attributes:
      eps: the budget ε (static).
      x_adv: ``(N, ...)`` adversarials inside the ε-ball and the input range (``None`` with ``keep_inputs=False``).
      raw: ``(N, ...)`` the attack's point before clipping into the input range
        (FGSM's ``x + ε·sign(∇J)``; iterative attacks stay in range, so ``raw`` equals ``x_adv``).
      success: ``(N,)`` bool: untargeted, prediction ≠ label; targeted, prediction = goal.
      outputs_clean, outputs_adv: ``(N, K)`` logits before and after.
      norms: ``(N,)`` ‖x_adv − x‖ in the attack's norm.
      objective_trace: ``(T,)`` mean objective J over the batch per iterate (the loss by default).
    """

    eps: float = dataclasses.field(metadata=dict(static=True))
    success: Bool[Host, " n"]
    outputs_clean: Float[Host, " n k"]
    outputs_adv: Float[Host, " n k"]
    norms: Float[Host, " n"]
    objective_trace: Float[Host, " t"]
    x_adv: Float[Host, " n *features"] | None = None
    raw: Float[Host, " n *features"] | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SweepResult(Result):
    """An attack over a list of ε: ``results[i]`` is for ``eps[i]``.

    ``labels`` ``(N,)`` are the classes attacked away from (``None`` for a targeted
    attack), ``goal`` ``(N,)`` the classes attacked towards (``None`` untargeted);
    ``label_source`` says where they came from; ``value_range`` is the range
    adversarials were clipped to (``None``: not clipped).
    """

    results: tuple[AttackResult, ...]
    labels: Int[Host, " n"] | None
    goal: Int[Host, " n"] | None
    eps: tuple[float, ...] = dataclasses.field(metadata=dict(static=True))
    label_source: LabelSource = dataclasses.field(metadata=dict(static=True))
    config: A.AttackConfig = dataclasses.field(metadata=dict(static=True))
    value_range: tuple[float, float] | None = dataclasses.field(metadata=dict(static=True))

    @property
    def targeted(self) -> bool:
        return self.goal is not None


# ----------------------------------------------------------------------------- checks and binding


def check_eps(eps: Any, *, sequence: bool) -> tuple[float, ...]:
    """Budgets as floats: one number (``sequence=False``) or a non-empty sequence; raises on < 0, NaN or inf."""
    if sequence:
        if isinstance(eps, (str, bytes)) or np.ndim(eps) != 1 or np.size(eps) == 0:
            raise ValueError(f"expected eps as a non-empty sequence of numbers, got {eps!r}")
    elif np.ndim(eps) != 0:
        raise TypeError(f"expected eps as one number (use sweep for a list), got {eps!r}")
    try:
        values = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"expected eps as numbers, got {eps!r}") from None
    for e in values:
        if not np.isfinite(e) or e < 0:
            raise ValueError(f"expected eps >= 0 (finite), got {float(e)!r}")
    return tuple(float(e) for e in values)


_MIN_CLASSES = {"dlr": 3, "dlr_targeted": 4}


def check_config(config: Any, key: Any, model: Model | None = None) -> A.AttackConfig:
    """An :class:`~explain.adversarial.attacks.AttackConfig` that keeps its best iterate, and a key if it is random.

    With ``model``, also that its loss suits the model (a classifier; DLR needs 3 classes, targeted DLR 4).
    """
    if not isinstance(config, A.AttackConfig):
        raise TypeError(f"expected config to be an AttackConfig, got {type(config).__name__}")
    if model is not None:
        if model.output_kind != "classification":
            raise ValueError(REGRESSION_MSG.format(name=model.name))
        least = _MIN_CLASSES.get(config.loss, 2)
        if model.num_outputs < least:
            raise ValueError(
                f"loss {config.loss!r} needs at least {least} classes; model {model.name!r} has {model.num_outputs}"
            )
    if not config.keep_best:
        raise ValueError(
            "the public attacks need AttackConfig(keep_best=True): the reported iterate is the best one kept"
        )
    if config.randomised:
        if key is None:
            raise ValueError("a randomised attack (random_start=True) needs an explicit key=jax.random.key(...)")
        check_key(key, what="a randomised attack (random_start=True)")
    return config


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttackBatch:
    """A validated batch bound to an attack: what every attack, search and evaluation consumes.

    Attributes:
      x: ``(N, *input_shape)``, validated (a NumPy array stays on the host).
      objective: the target J ascended, bound to these rows.
      labels: ``(N,)`` classes to move away from, or ``None`` for a targeted attack.
      goal: ``(N,)`` classes to move towards, or ``None``.
      model, label_source: static; ``custom``: the objective is the user's ``target=`` (not a loss of the config).
    """

    x: Batch
    objective: BoundTarget
    labels: Int[Array, " n"] | None
    goal: Int[Array, " n"] | None
    model: Model = dataclasses.field(metadata=dict(static=True))
    label_source: LabelSource = dataclasses.field(metadata=dict(static=True))
    custom: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def value_range(self) -> tuple[float, float] | None:
        vr = self.model.input_spec.value_range
        return None if vr is None else (float(vr[0]), float(vr[1]))

    def rows(self, idx: Any) -> AttackBatch:
        """The rows ``idx`` (an index array or a slice), objective, labels and goal sliced alongside."""
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return dataclasses.replace(
            self, x=self.x[idx], objective=self.objective.rows(idx), labels=take(self.labels), goal=take(self.goal)
        )


def _classes(model: Model, classes: Any, n: int) -> jax.Array:
    """``(N,)`` int32 classes (one int broadcast), checked against the model's classes on the host."""
    return targets_lib.resolve(model, targets_lib.loss(classes, "ce"), n).aux


def bind(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    memory_budget: int | None = None,
) -> AttackBatch:
    """Validates ``x`` once and binds labels, goal and objective, before anything compiles.

    Labels default to the model's predictions (one chunked forward pass, after every check).

    Raises:
      ValueError / TypeError: a regression model; both ``labels`` and ``goal``; classes out of
      ``range(model.num_outputs)`` or of the wrong shape; bad ``x``; a bad ``target``.
    """
    model = as_model(model)
    if model.output_kind != "classification":
        raise ValueError(REGRESSION_MSG.format(name=model.name))
    if labels is not None and goal is not None:
        raise ValueError("give labels= (untargeted attack) or goal= (targeted attack), not both")
    chunking.check_budget(memory_budget)
    if target is None:
        x = model.input_spec.validate(x)
        objective = None
    else:  # the user's objective, bound (and a predicted class frozen) by the one prepare
        p = prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
        x, objective = p.x, p.target
    n = x.shape[0]
    labels = None if labels is None else _classes(model, labels, n)
    goal = None if goal is None else _classes(model, goal, n)
    source: LabelSource = "goal" if goal is not None else "labels" if labels is not None else "predictions"
    if labels is None and goal is None:
        labels = jnp.asarray(np.argmax(forward(model, x, memory_budget=memory_budget), axis=1).astype(np.int32))
    custom = objective is not None
    if objective is None:
        objective = A.objective(labels=labels, goal=goal)
    return AttackBatch(
        x=x, objective=objective, labels=labels, goal=goal, model=model, label_source=source, custom=custom
    )


def check_goal(config: A.AttackConfig, goal: Any) -> None:
    """APGD-T picks its own goals: refuse ``goal=`` with it."""
    if goal is not None and config.loss == "dlr_targeted":
        raise ValueError(
            "loss 'dlr_targeted' (APGD-T) picks its own goals among the top classes; for an attack "
            "towards goal= use loss 'ce', 'cw' or 'dlr'"
        )


def objective_for(b: AttackBatch, config: A.AttackConfig) -> BoundTarget:
    """The objective an attack ascends on ``b``: the user's ``target=``, else the config's loss."""
    if b.custom:
        if config.loss != "ce":
            raise ValueError(f"give target= or an attack loss ({config.loss!r}), not both")
        return b.objective
    if config.loss == "dlr_targeted":
        check_goal(config, b.goal)
        return b.objective  # unused: APGD-T binds one targeted DLR per goal class
    if config.loss == "ce":
        return b.objective
    return A.objective(labels=b.labels, goal=b.goal, loss=config.loss)


# ----------------------------------------------------------------------------- running


_LOOPS = {"pgd": A.pgd_loop, "apgd": apgd_lib.apgd_loop, "square": square_lib.square_loop}


def _attack_rows(apply, params, x, objective, labels, goal, eps, row_ids, *, config, value_range, key):
    """One chunk attacked, as a plain dict (``map_rows`` fills host NumPy arrays from it), with ``norms`` ‖x_adv − x‖."""
    rows = dict(labels=labels, goal=goal, eps=eps, value_range=value_range)
    if config.kind == "fgsm":
        res = A._fgsm(apply, params, x, objective, **rows, norm=config.norm)
    else:
        res = _LOOPS[config.kind](apply, params, x, objective, **rows, config=config, key=key, row_ids=row_ids)
    norms = A._delta_norm(res.x_adv, x, config.norm)
    return {**{f.name: getattr(res, f.name) for f in dataclasses.fields(res)}, "norms": norms}


def run_attack(
    b: AttackBatch,
    eps: np.ndarray,
    *,
    config: A.AttackConfig,
    key: jax.Array | None,
    row_ids: np.ndarray | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> dict[str, np.ndarray | None]:
    """The attack on a bound batch with ``eps`` per example ``(N,)``: the fields of
    :class:`~explain.adversarial.attacks.Adversarial` and ``norms`` ``(N,)``, as host arrays.

    One compiled gradient step serves every chunk, every ε and every number of steps;
    restarts keep the worst case per example. ``row_ids`` ``(N,)`` name the rows' random
    streams (default ``0..N-1``): a subset of a batch passes its rows' ids to draw what the
    whole batch would have drawn for them.
    """
    m = b.model
    objective = objective_for(b, config)
    rows = chunking.rows_per_chunk(m, memory_budget=memory_budget, dtype=b.x.dtype)
    fn = functools.partial(_attack_rows, m.apply, m.params, config=config, value_range=b.value_range, key=key)
    ids = np.arange(b.n, dtype=np.int32) if row_ids is None else np.asarray(row_ids, np.int32)
    eps = np.asarray(eps, b.x.dtype)
    desc = f"{config.kind}-{config.norm}"
    return chunking.map_rows(
        fn, b.x, objective, b.labels, b.goal, eps, ids, batch=rows, show_progress=show_progress, desc=desc
    )


def sweep_batch(
    b: AttackBatch,
    eps: Budgets,
    *,
    config: A.AttackConfig,
    key: jax.Array | None,
    keep_inputs: bool = True,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> SweepResult:
    """:func:`sweep` on an already bound batch (arguments already checked)."""
    results = []
    for e in eps:
        res = run_attack(
            b, np.full((b.n,), e), config=config, key=key, memory_budget=memory_budget, show_progress=show_progress
        )
        results.append(
            AttackResult(
                eps=e,
                success=jnp.asarray(res["success"]),
                outputs_clean=jnp.asarray(res["outputs_clean"]),
                outputs_adv=jnp.asarray(res["outputs"]),
                norms=jnp.asarray(res["norms"]),
                objective_trace=jnp.asarray(res["trace"].mean(axis=0)),
                x_adv=jnp.asarray(res["x_adv"]) if keep_inputs else None,
                raw=jnp.asarray(res["raw"]) if keep_inputs else None,
            )
        )
    return SweepResult(
        results=tuple(results),
        labels=b.labels,
        goal=b.goal,
        eps=tuple(eps),
        label_source=b.label_source,
        config=config,
        value_range=b.value_range,
    )


# ----------------------------------------------------------------------------- public attacks


def sweep(
    model: Model | Any,
    x: Batch,
    *,
    eps: Budgets,
    config: A.AttackConfig = DEFAULT_ATTACK,
    key: jax.Array | None = None,
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    keep_inputs: bool = True,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> SweepResult:
    """Runs one attack at every ε of a list, compiled once.

    Args:
      model: a classification :class:`~explain.model.Model` (or a bundle).
      x: ``(N, *input_spec.shape)`` clean inputs.
      eps: budgets ε ≥ 0 in the attack's norm (pixel units of ``x``), a sequence.
      config: see :class:`~explain.adversarial.attacks.AttackConfig` (``keep_best=True``).
      key: PRNG key, required when the attack has a random start.
      target: the objective J ascended (see :mod:`explain.targets`); default the
        cross-entropy against ``labels`` (untargeted) or its negative against ``goal`` (targeted).
      labels: ``(N,)`` true classes to move away from; default the model's predictions.
      goal: ``(N,)`` classes (or one int) to move towards: a targeted attack.
      keep_inputs: ``False`` drops ``x_adv``/``raw`` (saves memory in long sweeps).
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).
      show_progress: a progress bar over chunks of rows.

    Returns:
      :class:`SweepResult`.

    Raises:
      ValueError: ε < 0, unknown norm, labels/goal out of range, a regression model, no key
      for a random start, all before anything compiles.

    Example:
      >>> s = sweep(m, x, eps=[0, 2/255, 8/255], config=AttackConfig("pgd", steps=20), key=jax.random.key(0))
      >>> [float(r.success.mean()) for r in s.results]
    """
    eps_list = check_eps(eps, sequence=True)
    config = check_config(config, key, as_model(model))
    check_goal(config, goal)
    b = bind(model, x, target=target, labels=labels, goal=goal, memory_budget=memory_budget)
    return sweep_batch(
        b, eps_list, config=config, key=key, keep_inputs=keep_inputs, memory_budget=memory_budget,
        show_progress=show_progress,
    )  # fmt: skip


def _at_one_eps(model, x, e, config, key, target, labels, goal, memory_budget, show_progress) -> AttackResult:
    """:func:`sweep` at the one (checked) ε ``e``: what the single-ε attacks return."""
    return sweep(
        model, x, eps=[e], config=config, key=key, target=target, labels=labels, goal=goal,
        memory_budget=memory_budget, show_progress=show_progress,
    ).results[0]  # fmt: skip


def fgsm(
    model: Model | Any,
    x: Batch,
    *,
    eps: Budget,
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    norm: str = "linf",
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> AttackResult:
    """FGSM (Goodfellow et al. 2015): ``x_adv = clip(x + ε·sign(∇ₓL(x, y)))``; targeted: ``x − ε·sign(∇ₓL(x, goal))``.

    ``norm="l2"`` gives FGM, ``x + ε·∇L/‖∇L‖₂``. Labels default to predictions.
    See :func:`sweep` for the arguments and errors.
    """
    (e,) = check_eps(eps, sequence=False)
    cfg = A.AttackConfig("fgsm", norm=norm, steps=1, random_start=False)
    return _at_one_eps(model, x, e, cfg, None, target, labels, goal, memory_budget, show_progress)


def bim(
    model: Model | Any,
    x: Batch,
    *,
    eps: Budget,
    steps: int = 10,
    rel_step_size: float | None = None,
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    norm: str = "linf",
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> AttackResult:
    """BIM / iterative FGSM (Kurakin et al. 2017): PGD from ``x`` itself, no random start.

    Step ``α = rel_step_size·ε``, default ``2.5·ε/steps``. See :func:`sweep`.
    """
    (e,) = check_eps(eps, sequence=False)
    cfg = A.AttackConfig("pgd", norm=norm, steps=steps, rel_step_size=rel_step_size, random_start=False)
    return _at_one_eps(model, x, e, cfg, None, target, labels, goal, memory_budget, show_progress)


def pgd(
    model: Model | Any,
    x: Batch,
    *,
    eps: Budget,
    key: jax.Array | None,
    steps: int = 10,
    restarts: int = 1,
    rel_step_size: float | None = None,
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    norm: str = "linf",
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> AttackResult:
    """PGD (Madry et al. 2018) under L∞ or L2 with a random start and restarts.

    ``x_{t+1} = x + Π_ε(clip(x_t + α·d(∇J)) − x)``, ``α = rel_step_size·ε``
    (default ``2.5·ε/steps``: Madry et al.'s convention, which lets a path
    cross the ball). The best iterate per example is kept, ranked by (success,
    J), and never one whose J is below the clean J; restarts keep the
    worst case per example. See :func:`sweep`.

    Example:
      >>> r = pgd(m, x, eps=8 / 255, key=jax.random.key(0), steps=20)
      >>> float(r.success.mean())
    """
    (e,) = check_eps(eps, sequence=False)
    cfg = A.AttackConfig(
        "pgd", norm=norm, steps=steps, rel_step_size=rel_step_size, random_start=True, restarts=restarts
    )
    return _at_one_eps(model, x, e, cfg, key, target, labels, goal, memory_budget, show_progress)


def apgd(
    model: Model | Any,
    x: Batch,
    *,
    eps: Budget,
    key: jax.Array,
    steps: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    target_classes: int = 9,
    rel_step_size: float = 2.0,
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    norm: str = "linf",
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> AttackResult:
    """APGD (Croce & Hein 2020): PGD with momentum whose step halves at checkpoints; no step size to tune.

    ``loss`` is ``"ce"`` (APGD-CE), ``"dlr"`` (APGD-DLR), ``"cw"``, or ``"dlr_targeted"`` (APGD-T: the
    targeted DLR loss towards each of the ``target_classes`` best other classes in turn, worst case
    kept). ``steps`` gradient passes per restart (and per target class), first step ``rel_step_size·ε``.
    See :mod:`explain.adversarial.apgd` for the algorithm and :func:`sweep` for the other arguments.

    Example:
      >>> r = apgd(m, x, eps=8 / 255, key=jax.random.key(0), loss="dlr")
      >>> float(r.success.mean())
    """
    (e,) = check_eps(eps, sequence=False)
    cfg = A.AttackConfig(
        "apgd", norm=norm, steps=steps, rel_step_size=rel_step_size, restarts=restarts, loss=loss,
        target_classes=target_classes,
    )  # fmt: skip
    return _at_one_eps(model, x, e, cfg, key, target, labels, goal, memory_budget, show_progress)


def square(
    model: Model | Any,
    x: Batch,
    *,
    eps: Budget,
    key: jax.Array,
    queries: int = 1000,
    p_init: float = 0.8,
    loss: str = "cw",
    target: Any = None,
    labels: Any = None,
    goal: Any = None,
    norm: str = "linf",
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> AttackResult:
    """Square Attack (Andriushchenko et al. 2020): random search over square windows, outputs only, no gradients.

    ``queries`` forward passes per example at most (the start is the first), windows covering
    ``p_init`` of the image at first; the objective is the CW margin by default. See
    :mod:`explain.adversarial.square` and :func:`sweep`.
    """
    (e,) = check_eps(eps, sequence=False)
    cfg = A.AttackConfig("square", norm=norm, steps=queries, loss=loss, p_init=p_init)
    return _at_one_eps(model, x, e, cfg, key, target, labels, goal, memory_budget, show_progress)
