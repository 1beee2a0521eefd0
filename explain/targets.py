"""What is differentiated: one scalar per sample, chosen from the model's outputs.

A target is a pure function ``fn(outputs (N, K), aux) -> (N,)`` plus ``aux``,
the per-sample data it needs (class indices, labels). ``fn`` is static (it
keys the compile cache); ``aux`` is traced, so explaining another class or
other labels reuses the compiled function.

Shortcuts accepted wherever a method takes ``target=``:

* ``None``: the predicted class's logit (classification) or output 0 (regression).
* ``int`` or an ``(N,)`` int array: that class's logit.
* ``"pred"``: the predicted class's logit (argmax taken inside the compiled call).
* ``"loss"``: the loss against ``labels`` (cross-entropy or mean squared error).
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
LossKind = Literal["ce", "mse"]
TargetFn = Callable[[jax.Array, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class Target:
    """A resolved target: ``fn(outputs, aux) -> (N,)``; ``name`` is for reports.

    ``classes`` is the class spec still to be checked against the model
    (``"pred"``, an int or an array); ``labels`` likewise for losses.
    """

    fn: TargetFn
    name: str
    classes: Any = None
    labels: Any = None
    needs: Literal["none", "classes", "labels"] = "none"
    loss_kind: LossKind | None = None


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


def _ce(out, labels):
    return -_take(jax.nn.log_softmax(out, axis=1), labels)


def _mse(out, labels):
    labels = labels.reshape(out.shape[0], -1)
    return jnp.mean((out - labels) ** 2, axis=1)


def _output(out, idx):
    return out[:, idx]


_SCORES = {"logit": (_logit, _pred_logit), "prob": (_prob, _pred_prob), "log_prob": (_log_prob, _pred_log_prob)}
_LOSSES = {"ce": _ce, "mse": _mse}


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


def loss(labels: Any, kind: LossKind | None = None) -> Target:
    """The per-sample loss against ``labels``: cross-entropy (class indices) or MSE (values).

    ``kind=None`` picks cross-entropy for classification and MSE for regression.
    """
    if kind is not None and kind not in _LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {list(_LOSSES)}")
    return Target(None, f"loss[{kind or 'auto'}]", labels=labels, needs="labels", loss_kind=kind)


def output(index: int = 0) -> Target:
    """Regression output ``index`` (or any output column of ``outputs``)."""
    return Target(_output, f"output[{index}]", classes=int(index), needs="none")


def custom(fn: Callable[[jax.Array], jax.Array], name: str | None = None) -> Target:
    """Any function from outputs ``(N, K)`` to one scalar per sample ``(N,)``."""
    if not callable(fn):
        raise TypeError(f"expected a callable outputs -> (N,), got {type(fn).__name__}")
    return Target(_CustomFn(fn), name or getattr(fn, "__name__", "custom"))


@dataclasses.dataclass(frozen=True)
class _CustomFn:
    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, out, _aux):
        val = self.fn(out)
        if val.shape != (out.shape[0],):
            raise ValueError(f"expected the custom target to return shape ({out.shape[0]},), got {val.shape}")
        return val


def _check_classes(model: Model, cls: Any, n: int) -> jax.Array:
    k = model.num_outputs
    arr = np.asarray(cls)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"expected class indices as integers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        arr = np.full((n,), int(arr))
    if arr.shape != (n,):
        raise ValueError(f"expected one class index per sample, shape ({n},), got {arr.shape}")
    if arr.min() < 0 or arr.max() >= k:
        bad = int(arr[(arr < 0) | (arr >= k)][0])
        raise ValueError(f"class index {bad} out of range; model {model.name!r} has {k} classes (0..{k - 1})")
    return jnp.asarray(arr, jnp.int32)


def _check_labels(model: Model, labels: Any, n: int, kind: str) -> jax.Array:
    if labels is None:
        raise ValueError("target 'loss' needs labels=: class indices (N,) or regression values (N,) / (N, K)")
    if kind == "ce":
        return _check_classes(model, labels, n)
    arr = np.asarray(labels, dtype=np.float64 if jax.config.jax_enable_x64 else np.float32)
    if arr.ndim == 0 or arr.shape[0] != n or arr.size != n * model.num_outputs:
        raise ValueError(
            f"expected {n} regression labels of shape ({n},) or ({n}, {model.num_outputs}), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("expected finite labels, got NaN or inf")
    return jnp.asarray(arr)


def resolve(model: Model, target: Any, n: int, *, labels: Any = None) -> tuple[TargetFn, Any, str]:
    """Turns any accepted ``target`` into ``(fn, aux, name)`` for a batch of ``n`` samples.

    Raises before any compilation: class index out of range, labels of the
    wrong shape, a class target on a regression model.
    """
    if target is None:
        target = "pred" if model.output_kind == "classification" else output(0)
    if isinstance(target, str):
        if target == "pred":
            target = class_score("pred")
        elif target == "loss":
            target = loss(labels)
        else:
            raise ValueError(
                f"unknown target {target!r}; expected an int, an array of ints, 'pred', 'loss', a callable or a Target"
            )
    elif isinstance(target, (int, np.integer)) or (hasattr(target, "shape") and not callable(target)):
        target = class_score(target)
    elif callable(target) and not isinstance(target, Target):
        target = custom(target)
    if not isinstance(target, Target):
        raise TypeError(f"unsupported target of type {type(target).__name__}")

    if target.needs == "labels":
        kind = target.loss_kind or ("ce" if model.output_kind == "classification" else "mse")
        if kind == "ce" and model.output_kind != "classification":
            raise ValueError(f"cross-entropy loss needs a classification model; {model.name!r} is a regression model")
        aux = _check_labels(model, target.labels if target.labels is not None else labels, n, kind)
        return _LOSSES[kind], aux, f"loss[{kind}]"
    if (
        target.fn in (_pred_logit, _pred_prob, _pred_log_prob, _logit, _prob, _log_prob)
        and model.output_kind != "classification"
    ):
        raise ValueError(
            f"class targets need a classification model; {model.name!r} is a regression model (use target=explain.targets.output(i))"
        )
    if target.needs == "classes":
        return target.fn, _check_classes(model, target.classes, n), target.name
    if target.fn is _output:
        if not 0 <= target.classes < model.num_outputs:
            raise ValueError(
                f"output index {target.classes} out of range; model {model.name!r} has {model.num_outputs} outputs"
            )
        return target.fn, target.classes, target.name
    return target.fn, None, target.name
