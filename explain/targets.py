"""What is differentiated: one scalar per sample, chosen from the model's outputs.

A target bound to a batch is a :class:`BoundTarget`: a pure function
``fn(outputs (N, K), aux) -> (N,)`` (static: it keys compilation) and ``aux``,
its per-row data (class indices, labels; leading axis ``N``, or ``None``).
Because ``aux`` is traced, explaining another class or other labels reuses the
compiled function, and slicing a batch slices its target with it.

Shortcuts accepted wherever a method takes ``target=``:

* ``None``: the predicted class's logit (classification) or output 0 (regression).
* ``int`` or an ``(N,)`` int array: that class's logit.
* ``"pred"``: the predicted class's logit, the class frozen at ``x`` (see :func:`explain.gradients.prepare`).
* ``"loss"``: the loss against ``labels`` (cross-entropy or mean squared error);
  ``"loss:cw"``, ``"loss:dlr"``, ``"loss:ce"``, ``"loss:mse"`` name the kind (see :func:`loss`).
* ``"all"``: every output at once (methods that support it return ``(N, K, ...)``).
* a callable ``outputs (N, K) -> (N,)``.
* a :class:`Target` from :func:`class_score`, :func:`loss`, :func:`output`, :func:`custom`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from explain.model import Model

Score = Literal["logit", "prob", "log_prob"]
LossKind = Literal["ce", "mse", "cw", "dlr", "dlr_targeted"]
TargetFn = Callable[[jax.Array, Any], jax.Array]
ALL = "all"


@dataclasses.dataclass(frozen=True)
class Target:
    """A target not yet bound to a batch: ``fn`` and what it still needs.

    ``classes`` is the class spec still to be checked against the model
    (``"pred"``, an int or an array); ``labels`` likewise for losses.
    """

    fn: TargetFn | None
    name: str
    classes: Any = None
    labels: Any = None
    needs: Literal["none", "classes", "labels"] = "none"
    loss_kind: LossKind | None = None
    goal: Any = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BoundTarget:
    """A target bound to a batch of ``N`` rows: ``self(outputs (N, K)) -> (N,)``.

    A pytree (``aux`` is the leaf), so it can be passed into ``jax.jit`` and
    ``jax.vmap`` next to ``x``. ``fn is None`` means every output
    (``target="all"``): ``self(outputs)`` is ``outputs (N, K)``.
    """

    fn: TargetFn | None = dataclasses.field(metadata=dict(static=True))
    aux: Any = None
    name: str = dataclasses.field(default="", metadata=dict(static=True))

    @property
    def all_outputs(self) -> bool:
        return self.fn is None

    def __call__(self, outputs: jax.Array) -> jax.Array:
        return outputs if self.fn is None else self.fn(outputs, self.aux)

    def rows(self, idx: Any) -> BoundTarget:
        """The target of the rows ``idx`` (an index array or a slice)."""
        return dataclasses.replace(self, aux=jax.tree_util.tree_map(lambda a: a[idx], self.aux))

    def tile(self, reps: int) -> BoundTarget:
        """The target of ``reps`` copies of the batch laid out ``(reps, N)`` row-major."""
        return dataclasses.replace(
            self, aux=jax.tree_util.tree_map(lambda a: jnp.tile(a, (reps,) + (1,) * (a.ndim - 1)), self.aux)
        )


def _take(values: jax.Array, idx: jax.Array) -> jax.Array:
    return jnp.take_along_axis(values, idx[:, None].astype(jnp.int32), axis=1)[:, 0]


def _pred(out: jax.Array) -> jax.Array:
    return jax.lax.stop_gradient(jnp.argmax(out, axis=1))


def _logit(out, cls):
    return _take(out, cls)


def _prob(out, cls):
    return _take(jax.nn.softmax(out, axis=1), cls)


def _log_prob(out, cls):
    return _take(jax.nn.log_softmax(out, axis=1), cls)


def _pred_logit(out, _):
    return _take(out, _pred(out))


def _pred_prob(out, _):
    return _take(jax.nn.softmax(out, axis=1), _pred(out))


def _pred_log_prob(out, _):
    return _take(jax.nn.log_softmax(out, axis=1), _pred(out))


def cross_entropy(out: jax.Array, labels: jax.Array) -> jax.Array:
    """``-log softmax(z)_y``, written so its gradient is exact in float32.

    The textbook form ``logsumexp(z) - z_y`` has gradient ``p - onehot(y)``,
    whose true-class entry ``p_y - 1`` rounds to exactly 0 once ``p_y`` rounds
    to 1 (a logit gap above ~17 in float32), although its exact value is
    ``-Σ_{k≠y} p_k``; every attack and loss saliency on a confident sample then
    loses that component. Here ``L = softplus(m)`` with
    ``m = logsumexp_{k≠y}(z_k - z_y)``, so ``∂L/∂z_y = -σ(m)`` and
    ``∂L/∂z_k = σ(m)·softmax_{k≠y}(z - z_y)_k`` are computed directly and
    never as a difference of nearly equal numbers.

    Args:
      out: logits ``(N, K)``, ``K >= 2``.
      labels: ``(N,)`` int class indices.

    Returns:
      ``(N,)`` per-sample losses.
    """
    z_y = _take(out, labels)
    is_label = jax.nn.one_hot(labels, out.shape[1], dtype=bool)
    others = jnp.where(is_label, -jnp.inf, out - z_y[:, None])
    return jax.nn.softplus(jax.nn.logsumexp(others, axis=1))


def mean_squared_error(out: jax.Array, labels: jax.Array) -> jax.Array:
    """``mean_k (out_k - y_k)²`` per sample; ``labels`` ``(N,)`` or ``(N, K)``."""
    labels = labels.reshape(out.shape[0], -1)
    return jnp.mean((out - labels) ** 2, axis=1)


def _best_other(out: jax.Array, labels: jax.Array) -> jax.Array:
    """``max_{k≠y} z_k`` per row."""
    return jnp.max(jnp.where(jax.nn.one_hot(labels, out.shape[1], dtype=bool), -jnp.inf, out), axis=1)


def cw_margin(out: jax.Array, labels: jax.Array) -> jax.Array:
    """Carlini–Wagner logit margin ``max_{k≠y} z_k − z_y``: positive once the prediction leaves ``y``.

    Unlike the cross-entropy it does not saturate on confident samples: its gradient is a
    difference of two logit gradients whatever the margin.

    References:
      Carlini, Wagner. Towards Evaluating the Robustness of Neural Networks. IEEE S&P 2017.
    """
    return _best_other(out, labels) - _take(out, labels)


_DLR_EPS = 1e-12


def dlr(out: jax.Array, labels: jax.Array) -> jax.Array:
    """Difference of Logits Ratio ``−(z_y − max_{k≠y} z_k) / (z_π1 − z_π3)``, ``π`` the logits sorted decreasing.

    Invariant to shifting and to rescaling the logits, so neither a saturated softmax nor
    logits scaled by a constant weaken it (AutoAttack's loss). Needs ``K >= 3``.

    References:
      Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse
      parameter-free attacks. ICML 2020.
    """
    top = jax.lax.top_k(out, 3)[0]  # (N, 3): z_π1 >= z_π2 >= z_π3
    return (_best_other(out, labels) - _take(out, labels)) / (top[:, 0] - top[:, 2] + _DLR_EPS)


def dlr_targeted(out: jax.Array, labels_goal: jax.Array) -> jax.Array:
    """Targeted DLR ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)``; ``labels_goal`` is ``(N, 2)``: ``y``, then the goal ``t``.

    Ascending it pulls the goal's logit above the true class's; the denominator
    makes it shift- and scale-invariant like :func:`dlr`. Needs ``K >= 4``.
    AutoAttack's APGD-T runs it against each of the top-k classes in turn.

    References:
      Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse
      parameter-free attacks. ICML 2020, eq. (7).
    """
    top = jax.lax.top_k(out, 4)[0]
    margin = _take(out, labels_goal[:, 1]) - _take(out, labels_goal[:, 0])
    return margin / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPS)


_SCORES = {"logit": (_logit, _pred_logit), "prob": (_prob, _pred_prob), "log_prob": (_log_prob, _pred_log_prob)}
_LOSSES = {"ce": cross_entropy, "mse": mean_squared_error, "cw": cw_margin, "dlr": dlr, "dlr_targeted": dlr_targeted}
_CLASS_LOSSES = ("ce", "cw", "dlr", "dlr_targeted")
_MIN_CLASSES = {"dlr": 3, "dlr_targeted": 4}
LOSS_KINDS: tuple[str, ...] = tuple(_LOSSES)
# A predicted-class target becomes the same score of a fixed class once the class is frozen at x.
FROZEN = {by_pred: by_index for by_index, by_pred in _SCORES.values()}


def class_score(cls: int | Any | Literal["pred"] = "pred", score: Score = "logit") -> Target:
    """The logit, probability or log-probability of class ``cls`` (int, ``(N,)`` ints, or ``"pred"``)."""
    if score not in _SCORES:
        raise ValueError(f"unknown score {score!r}; expected one of {list(_SCORES)}")
    by_index, by_pred = _SCORES[score]
    if isinstance(cls, str):
        if cls != "pred":
            raise ValueError(f"expected a class index, an array of indices or 'pred', got {cls!r}")
        return Target(by_pred, f"{score}[pred]")
    return Target(by_index, f"{score}[class]", classes=cls, needs="classes")


def loss(labels: Any, kind: LossKind | None = None, *, goal: Any = None) -> Target:
    """The per-sample loss against ``labels``: cross-entropy, the CW margin or DLR (class indices), or MSE (values).

    ``kind=None`` picks cross-entropy for classification and MSE for regression. The margin
    losses (:func:`cw_margin`, :func:`dlr`, :func:`dlr_targeted`) are what attacks should ascend
    on confident models; ``"dlr_targeted"`` also needs ``goal`` (one class or ``(N,)``, never the label).
    """
    if kind is not None and kind not in _LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {list(_LOSSES)}")
    if (goal is None) == (kind == "dlr_targeted"):
        raise ValueError("goal= (the class to pull towards) goes with loss 'dlr_targeted', and only with it")
    return Target(None, f"loss[{kind or 'auto'}]", labels=labels, needs="labels", loss_kind=kind, goal=goal)


def output(index: int = 0) -> Target:
    """Regression output ``index`` (or any output column of ``outputs``)."""
    return Target(_logit, f"output[{index}]", classes=int(index), needs="classes")


def custom(fn: Callable[[jax.Array], jax.Array], name: str | None = None) -> Target:
    """Any function from outputs ``(N, K)`` to one scalar per sample ``(N,)``."""
    if not callable(fn):
        raise TypeError(f"expected a callable outputs -> (N,), got {type(fn).__name__}")
    return Target(CustomFn(fn), name or getattr(fn, "__name__", "custom"))


@dataclasses.dataclass(frozen=True)
class CustomFn:
    """A user's ``outputs (N, K) -> (N,)`` as a target function (checked by :func:`explain.gradients.prepare`)."""

    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, out, _aux):
        return jnp.asarray(self.fn(out))


def _check_classes(model: Model, cls: Any, n: int, *, what: str = "class index") -> jax.Array:
    k = model.num_outputs
    arr = np.asarray(cls)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"expected class indices as integers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        arr = np.full((n,), int(arr))
    if arr.shape != (n,):
        raise ValueError(f"expected one {what} per sample, shape ({n},), got {arr.shape}")
    if arr.min() < 0 or arr.max() >= k:
        bad = int(arr[(arr < 0) | (arr >= k)][0])
        noun = "outputs" if what == "output index" else "classes"
        raise ValueError(f"{what} {bad} out of range; model {model.name!r} has {k} {noun} (0..{k - 1})")
    return jnp.asarray(arr, jnp.int32)


def _check_labels(model: Model, labels: Any, n: int, kind: str) -> jax.Array:
    if labels is None:
        raise ValueError("target 'loss' needs labels=: class indices (N,) or regression values (N,) / (N, K)")
    if kind in _CLASS_LOSSES:
        return _check_classes(model, labels, n)
    arr = np.asarray(labels, dtype=np.float64 if jax.config.jax_enable_x64 else np.float32)
    if arr.ndim == 0 or arr.shape[0] != n or arr.size != n * model.num_outputs:
        raise ValueError(
            f"expected {n} regression labels of shape ({n},) or ({n}, {model.num_outputs}), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("expected finite labels, got NaN or inf")
    return jnp.asarray(arr)


def _as_target(model: Model, target: Any, labels: Any) -> Target:
    if target is None:
        return class_score("pred") if model.output_kind == "classification" else output(0)
    if isinstance(target, str):
        if target == "pred":
            return class_score("pred")
        if target == "loss":
            return loss(labels)
        kind = target.removeprefix("loss:")
        if target.startswith("loss:") and kind in _LOSSES and kind != "dlr_targeted":
            return loss(labels, kind)
        raise ValueError(
            f"unknown target {target!r}; expected an int, an array of ints, 'pred', 'loss', "
            f"{', '.join(repr('loss:' + k) for k in _LOSSES if k != 'dlr_targeted')}, 'all', a callable or a Target"
        )
    if isinstance(target, (int, np.integer)) or (hasattr(target, "shape") and not callable(target)):
        return class_score(target)
    if callable(target) and not isinstance(target, Target):
        return custom(target)
    if not isinstance(target, Target):
        raise TypeError(f"unsupported target of type {type(target).__name__}")
    return target


def resolve(model: Model, target: Any, n: int, *, labels: Any = None, allow_all: bool = False) -> BoundTarget:
    """Binds any accepted ``target`` to a batch of ``n`` samples, on the host (nothing is compiled).

    Raises before any compilation: class index out of range, labels of the
    wrong shape, a class target on a regression model, ``"all"`` where the
    caller does not support it.
    """
    if isinstance(target, str) and target == ALL:
        if not allow_all:
            raise ValueError("target='all' is not supported here; pass a class index, 'pred' or 'loss'")
        return BoundTarget(None, None, ALL)
    target = _as_target(model, target, labels)
    classification = model.output_kind == "classification"
    if target.needs == "labels":
        kind = target.loss_kind or ("ce" if classification else "mse")
        if kind in _CLASS_LOSSES and not classification:
            raise ValueError(f"loss {kind!r} needs a classification model; {model.name!r} is a regression model")
        if model.num_outputs < _MIN_CLASSES.get(kind, 0):
            raise ValueError(
                f"loss {kind!r} needs at least {_MIN_CLASSES[kind]} classes; model {model.name!r} has {model.num_outputs}"
            )
        aux = _check_labels(model, target.labels if target.labels is not None else labels, n, kind)
        if kind == "dlr_targeted":
            goal = _check_classes(model, target.goal, n, what="goal class")
            if bool(jnp.any(goal == aux)):
                raise ValueError("expected goal classes different from the labels for loss 'dlr_targeted'")
            aux = jnp.stack([aux, goal], axis=1)
        return BoundTarget(_LOSSES[kind], aux, f"loss[{kind}]")
    is_output = target.name.startswith("output[")
    if target.fn in (*FROZEN, *FROZEN.values()) and not is_output and not classification:
        raise ValueError(
            f"class targets need a classification model; {model.name!r} is a regression model "
            "(use target=explain.targets.output(i))"
        )
    if target.needs == "classes":
        what = "output index" if is_output else "class index"
        return BoundTarget(target.fn, _check_classes(model, target.classes, n, what=what), target.name)
    return BoundTarget(target.fn, None, target.name)
