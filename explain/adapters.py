"""Adapters from Flax modules to :class:`explain.model.Model`, without editing them.

Layer access works by interception rather than by asking the user to add
``self.sow`` or ``self.perturb`` calls:

* linen: ``flax.linen.intercept_methods`` wraps every submodule ``__call__``;
  the output of the named one gets ``delta`` added and is recorded.
* NNX: the module graph is rebuilt by ``nnx.merge`` inside each trace, so its
  submodules are fresh objects we may alter; each tapped submodule's class is
  swapped for a cached subclass whose ``__call__`` adds ``delta`` and records.

Models as written in the wild take more than ``x`` (``__call__(self, x, rngs)``,
``__call__(self, x, train)``): ``call_args`` / ``call_kwargs`` are passed after
``x`` on every call. Before anything else, one abstract trace (``jax.eval_shape``,
nothing is compiled) checks the wrapped call against the contract of
:mod:`explain.model`, so a user meets our message rather than one from deep in Flax:

* the call's signature must accept ``(x, *call_args, **call_kwargs)``;
* the model must be deterministic: no ``BatchNorm`` on batch statistics (samples
  would interact), no active ``Dropout``, no state written by the call
  (:class:`TrainingModeError`);
* the call must return one array, not a dict or a tuple.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import graph as nnx_graph

from explain.model import InputSpec, Model, OutputKind

_TRAINING_HINT_NNX = (
    "explanations need a deterministic model; call model.eval() first "
    "(or construct it with use_running_average=True / deterministic=True)"
)
_TRAINING_HINT_LINEN = (
    "explanations need a deterministic model; pass call_kwargs={'train': False} (or the flag your module uses)"
)
# Parameters of linen's ``Module.apply`` itself: a call kwarg of that name would never reach the module.
_LINEN_APPLY_KWARGS = ("rngs", "mutable", "method", "capture_intermediates")


class TrainingModeError(ValueError):
    """The wrapped model is in training mode: BatchNorm on batch statistics, active Dropout, or written state.

    Explanations need ``apply`` to be a pure, deterministic function in which
    samples do not interact (see :mod:`explain.model`); a model in training
    mode is neither. The message names the layers and how to switch to evaluation.
    """


def _layer_order(tap, params, spec: InputSpec) -> tuple[str, ...]:
    """Tapped layer names in the order the forward pass reaches them.

    Read from the activations dict as it is filled during an abstract trace:
    a dict returned through ``jax.eval_shape`` comes back with sorted keys.
    """
    order: list[str] = []

    def record(p, x):
        _, acts = tap(p, x, {})
        order.extend(acts)
        return None

    jax.eval_shape(record, params, _abstract_batch(spec))
    return tuple(order)


def _abstract_batch(spec: InputSpec) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((1, *spec.shape), jnp.float32)


class _Recorder:
    """Records each tapped layer's output and adds its delta, for one forward pass.

    A submodule called more than once (shared weights) has no single
    activation: it is left out of the activations, and asking for its delta
    raises rather than silently summing over the calls.
    """

    def __init__(self, deltas: Mapping[str, jax.Array]):
        self.deltas = deltas
        self.acts: dict[str, jax.Array] = {}
        self.shared: set[str] = set()

    def __call__(self, name: str, out: jax.Array) -> jax.Array:
        if name in self.acts or name in self.shared:
            self.shared.add(name)
            self.acts.pop(name, None)
            if name in self.deltas:
                raise ValueError(f"layer {name!r} is called more than once in the forward pass; it cannot be tapped")
            return out
        self.acts[name] = out
        return out + self.deltas[name] if name in self.deltas else out


def _spec(input_shape, value_range, feature_names) -> InputSpec:
    return InputSpec(
        shape=tuple(int(s) for s in input_shape),
        value_range=None if value_range is None else (float(value_range[0]), float(value_range[1])),
        feature_names=None if feature_names is None else tuple(feature_names),
    )


def _as_2d(out: jax.Array) -> jax.Array:
    # Regression heads often return (N,); the contract is (N, K).
    return out[:, None] if out.ndim == 1 else out


# ----------------------------------------------------------------------------- checks shared by both adapters


def _check_signature(fn: Callable, label: str, call_args: tuple, call_kwargs: Mapping[str, Any]) -> None:
    """Raises ``TypeError`` when ``fn(x, *call_args, **call_kwargs)`` does not fit ``fn``'s signature.

    Checked by ``inspect.Signature.bind`` before tracing, so a missing ``train``
    or ``rngs`` argument is named here rather than by a ``TypeError`` from
    inside a trace. A signature Python cannot read is left to the call itself.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(None, *call_args, **call_kwargs)
        return
    except TypeError as err:
        problem = err
    try:
        bound = sig.bind_partial(None, *call_args, **call_kwargs).arguments
    except TypeError:
        bound = None
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if bound is not None:
        missing = [
            p.name
            for p in sig.parameters.values()
            if p.name not in bound and p.default is p.empty and p.kind not in variadic
        ]
        if missing:
            raise TypeError(
                f"{label} needs arguments besides x ({', '.join(map(repr, missing))}): "
                "pass them with call_args=/call_kwargs="
            ) from problem
    raise TypeError(
        f"{label}{sig} cannot be called as (x, *call_args, **call_kwargs) with call_args of length "
        f"{len(call_args)} and call_kwargs keys {sorted(call_kwargs)}: {problem}"
    ) from problem


def _flag(module: Any, call: Callable, args: tuple, kwargs: Mapping[str, Any], name: str) -> Any:
    """The value of flag ``name`` a BatchNorm or Dropout call runs with: the call's argument, else the attribute.

    Both Flax APIs resolve the flag this way (``first_from`` in NNX,
    ``merge_param`` in linen); ``None`` means it is set nowhere.
    """
    try:
        given = inspect.signature(call).bind(module, *args, **kwargs).arguments.get(name)
    except TypeError:
        given = None
    return getattr(module, name, None) if given is None else given


def _training_reason(module: Any, call: Callable, args: tuple, kwargs: Mapping[str, Any]) -> str | None:
    """Why this call of a BatchNorm or Dropout layer is in training mode, or ``None`` if it is deterministic.

    ``call`` is the layer class's own (unbound) ``__call__``, whose signature says where the flag is.
    """
    if isinstance(module, (nn.BatchNorm, nnx.BatchNorm)):
        flag = _flag(module, call, args, kwargs, "use_running_average")
        if flag is None:
            return "has use_running_average unset"
        return None if flag else "uses batch statistics"
    if isinstance(module, (nn.Dropout, nnx.Dropout)) and module.rate > 0:
        flag = _flag(module, call, args, kwargs, "deterministic")
        if flag is None:
            return "has deterministic unset"
        return None if flag else "is active"
    return None


def _first_input(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    # BatchNorm and Dropout keep the input's shape: returning it lets the abstract trace go on to later layers.
    return args[0] if args else next(iter(kwargs.values()))


def _check_output(out: Any, label: str, hint: str) -> None:
    """Raises ``TypeError`` when the abstract output is not one array (a dict, a tuple, anything else)."""
    if isinstance(out, jax.ShapeDtypeStruct):
        return
    if isinstance(out, Mapping):
        what = f"a dict with keys {sorted(map(str, out))}"
        example = "['logits']"
    elif isinstance(out, (tuple, list)):
        shapes = ", ".join(str(getattr(o, "shape", type(o).__name__)) for o in out)
        what = f"a {type(out).__name__} of {len(out)} values (shapes {shapes})"
        example = "[0]"
    else:
        what = f"a {type(out).__name__}"
        example = ".logits"
    raise TypeError(
        f"model {label} returns {what}; explain needs one array of shape (N, K): {hint.format(example=example)}"
    )


# ----------------------------------------------------------------------------- linen


def _linen_call(module: nn.Module, method: str | Callable | None) -> tuple[Callable, str]:
    """The callable ``module.apply`` will run, as ``fn(x, ...)``, and its name for messages."""
    cls = type(module).__name__
    if method is None:
        return module.__call__, f"{cls}.__call__"
    if isinstance(method, str):
        return getattr(module, method), f"{cls}.{method}"
    return functools.partial(method, module), f"{cls} method {getattr(method, '__name__', method)!r}"


def _linen_check(
    module: nn.Module, variables: Any, spec: InputSpec, call_args: tuple, call_kwargs: dict, method
) -> None:
    """Runs one abstract call; raises for training mode, a missing collection, or an output that is not one array.

    BatchNorm and Dropout calls are intercepted and their flags read (so all of
    them are named, not only the first); a layer of the user's own that writes
    a collection or draws an rng is caught by the Flax error the call raises.
    """
    cls = type(module).__name__
    findings: list[str] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            why = _training_reason(context.module, type(context.module).__call__, args, kwargs)
            if why is not None:
                path = "/".join(context.module.path) or cls
                findings.append(f"{type(context.module).__name__} at {path!r} {why}")
                return _first_input(args, kwargs)
        return next_fun(*args, **kwargs)

    def run(variables, x):
        with nn.intercept_methods(interceptor):
            return module.apply(variables, x, *call_args, method=method, **call_kwargs)

    out = None
    try:
        out = jax.eval_shape(run, variables, _abstract_batch(spec))
    except flax.errors.ModifyScopeVariableError as err:
        m = re.search(r'in "([^"]*)" because collection "([^"]*)"', str(err))
        findings.append(f"{m[1]!r} wants to update {m[2]!r}" if m else str(err))
    except flax.errors.InvalidRngError as err:
        m = re.search(r'(\S+) needs PRNG for "([^"]*)"', str(err))
        findings.append(f"{m[1]!r} needs a {m[2]!r} rng" if m else str(err))
    except flax.errors.ScopeCollectionNotFound as err:
        m = re.search(r'collection "([^"]*)"', str(err))
        have = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise ValueError(
            f"linen module {cls} reads collection {m[1] if m else '?'!r} that variables does not have "
            f"(it has {have}): pass the whole dict returned by module.init (e.g. params and batch_stats), "
            "not only variables['params']"
        ) from err
    if findings:
        raise TrainingModeError(
            f"linen module {cls} is in training mode ({', '.join(findings)}): {_TRAINING_HINT_LINEN}"
        )
    _check_output(
        out,
        cls,
        "wrap it so it returns the logits (e.g. method=lambda module, x: module(x){example}) "
        "or pass method= naming a method that does",
    )


def _linen_tap_fn(module: nn.Module, method, call_args: tuple, call_kwargs: Mapping[str, Any]):
    def tap(variables, x, deltas: Mapping[str, jax.Array]):
        record = _Recorder(deltas)

        def interceptor(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            mod = context.module
            if context.method_name != "__call__" or not mod.path or not isinstance(out, jax.Array):
                return out
            return record("/".join(mod.path), out)

        with nn.intercept_methods(interceptor):
            out = module.apply(variables, x, *call_args, method=method, **call_kwargs)
        return _as_2d(out), record.acts

    return tap


def from_linen(
    module: nn.Module,
    variables: Any,
    *,
    input_shape: Sequence[int],
    output_kind: OutputKind = "classification",
    class_names: Sequence[str] | None = None,
    value_range: tuple[float, float] | None = None,
    feature_names: Sequence[str] | None = None,
    method: str | Callable | None = None,
    call_args: Sequence[Any] = (),
    call_kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Model:
    """Wraps a linen module and its variables (``{"params": ...}``) as a :class:`Model`.

    Args:
      module: any ``flax.linen.Module`` whose call maps ``(N, *input_shape)`` to
        ``(N, K)`` or ``(N,)``; it is not edited.
      variables: the collections passed to ``module.apply``: the whole dict
        returned by ``module.init`` (``params``, and ``batch_stats`` for BatchNorm).
      input_shape: per-sample input shape.
      output_kind, class_names, value_range, feature_names: see :class:`Model`.
      method: the module method to call (a name, or a function ``(module, x, ...)``),
        default ``__call__``.
      call_args, call_kwargs: further arguments of the call, passed after ``x`` on
        every ``apply`` and ``tap``: ``module.apply(variables, x, *call_args,
        **call_kwargs)``. They are fixed (closed over, never traced as inputs), e.g.
        ``call_kwargs={"train": False}`` for a module with a train flag.

    Returns:
      A :class:`Model` whose layers are the module's submodules, named by their
      path (``"block1"``, ``"block1/conv"``, ``"Dense_0"``).

    Raises:
      TypeError: the call needs arguments besides ``x`` that ``call_args`` /
        ``call_kwargs`` do not give, or it returns a dict or a tuple rather than one array.
      TrainingModeError: the call runs BatchNorm on batch statistics, an active
        Dropout, or writes a collection or draws an rng (pass the module's eval flag).
      ValueError: ``variables`` lacks a collection the call reads, or ``call_kwargs``
        names an argument of ``module.apply`` itself.
    """
    spec = _spec(input_shape, value_range, feature_names)
    call_args = tuple(call_args)
    call_kwargs = dict(call_kwargs or {})
    clash = sorted(set(call_kwargs) & set(_LINEN_APPLY_KWARGS))
    if clash:
        raise ValueError(
            f"call_kwargs {clash} are arguments of linen's module.apply, not of the module's call: explain "
            "runs a deterministic model with immutable collections and no rngs; pass the method with method="
        )
    fn, label = _linen_call(module, method)
    _check_signature(fn, label, call_args, call_kwargs)
    _linen_check(module, variables, spec, call_args, call_kwargs, method)
    tap = _linen_tap_fn(module, method, call_args, call_kwargs)

    def apply(variables, x):
        return _as_2d(module.apply(variables, x, *call_args, method=method, **call_kwargs))

    return Model(
        apply=apply,
        params=variables,
        input_spec=spec,
        output_kind=output_kind,
        class_names=None if class_names is None else tuple(class_names),
        tap=tap,
        layer_names=_layer_order(tap, variables, spec),
        name=name or type(module).__name__,
    )


# ----------------------------------------------------------------------------- NNX


@functools.cache
def _tapped_class(cls: type) -> type:
    def __call__(self, *args, **kwargs):
        name, record = self._explain_tap
        return record(name, cls.__call__(self, *args, **kwargs))

    return type(f"Tapped{cls.__name__}", (cls,), {"__call__": __call__})


@functools.cache
def _checked_class(cls: type) -> type:
    """A subclass whose call records a training-mode call and returns its input instead of running it."""

    def __call__(self, *args, **kwargs):
        path, findings = self._explain_check
        why = _training_reason(self, cls.__call__, args, kwargs)
        if why is None:
            return cls.__call__(self, *args, **kwargs)
        findings.append(f"{cls.__name__} at {path!r} {why}")
        return _first_input(args, kwargs)

    return type(f"Checked{cls.__name__}", (cls,), {"__call__": __call__})


def _nnx_submodules(module: nnx.Module) -> list[tuple[str, nnx.Module]]:
    subs = []
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Module) and path and callable(node):
            subs.append(("/".join(str(p) for p in path), node))
    return subs


def _nnx_call_args(call_args: tuple, call_kwargs: dict) -> Callable[[], tuple[tuple, dict]]:
    """A function giving fresh ``(call_args, call_kwargs)`` for one trace.

    Graph nodes among them (an ``nnx.Rngs``, a module) hold Variables that a
    call may write (``rngs.dropout()`` advances a counter). Used as they are,
    a write inside ``jax.jit`` / ``grad`` / ``vmap`` would fail (``TraceContextError``)
    or leak a tracer, and eagerly it would change the user's object. So, like
    the module itself, they are split once and merged afresh in every trace from
    the same state: ``apply`` stays pure and the user's objects are not edited.
    Anything else is passed as it is.
    """
    slots = [("a", i) for i, a in enumerate(call_args) if nnx_graph.is_graph_node(a)]
    slots += [("k", k) for k, v in call_kwargs.items() if nnx_graph.is_graph_node(v)]
    if not slots:
        return lambda: (call_args, call_kwargs)
    # One split for all of them, so a node shared between two arguments stays shared.
    graphdef, state = nnx.split(tuple(call_args[k] if where == "a" else call_kwargs[k] for where, k in slots))

    def fresh() -> tuple[tuple, dict]:
        args, kwargs = list(call_args), dict(call_kwargs)
        # copy=True: fresh Variables, created in the current trace (merge alone would reuse the stored ones).
        for (where, k), node in zip(slots, nnx.merge(graphdef, state, copy=True), strict=True):
            if where == "a":
                args[k] = node
            else:
                kwargs[k] = node
        return tuple(args), kwargs

    return fresh


def _nnx_variables(mod: nnx.Module, args: tuple, kwargs: dict) -> list[tuple[str, nnx.Variable]]:
    """Every Variable reachable from the module and the call arguments, with a path for messages."""
    roots = [("", mod)] + [(f"call_args[{i}]", a) for i, a in enumerate(args)]
    roots += [(f"call_kwargs[{k!r}]", v) for k, v in kwargs.items()]
    found = []
    for prefix, root in roots:
        if not nnx_graph.is_graph_node(root):
            continue
        for path, node in nnx.iter_graph(root):
            if isinstance(node, nnx.Variable):
                found.append(("/".join([prefix, *map(str, path)]).lstrip("/"), node))
    return found


def _nnx_check(graphdef, state, fresh_args, spec: InputSpec, label: str) -> None:
    """Runs one abstract call and raises :class:`TrainingModeError` or our output error.

    Every BatchNorm and Dropout is swapped (on the merged copy) for a subclass
    that reads the flags the call actually gets, so a module switched by a call
    flag (``call_kwargs={"train": False}`` forwarded as ``use_running_average=``)
    passes, and each layer in training mode is named. A Variable of the module or
    of the call arguments (an ``nnx.Rngs`` counter, a custom running statistic)
    written by the call is caught by identity: merge gives each its own value,
    and a write replaces it.
    """
    findings: list[str] = []

    def run(state, x):
        mod = nnx.merge(graphdef, state)
        args, kwargs = fresh_args()
        for path, node in nnx.iter_graph(mod):
            if isinstance(node, (nnx.BatchNorm, nnx.Dropout)):
                object.__setattr__(node, "_explain_check", ("/".join(map(str, path)) or label, findings))
                object.__setattr__(node, "__class__", _checked_class(type(node)))
        before = [(path, var, var.get_value()) for path, var in _nnx_variables(mod, args, kwargs)]
        out = mod(x, *args, **kwargs)
        findings.extend(
            f"{type(var).__name__} at {path!r} is written" for path, var, old in before if var.get_value() is not old
        )
        return out

    out = jax.eval_shape(run, state, _abstract_batch(spec))
    if findings:
        raise TrainingModeError(f"model {label} is in training mode ({', '.join(findings)}): {_TRAINING_HINT_NNX}")
    _check_output(
        out,
        label,
        "wrap it so it returns the logits (e.g. an nnx.Module whose __call__ returns self.model(x){example})",
    )


def from_nnx(
    module: nnx.Module,
    *,
    input_shape: Sequence[int],
    output_kind: OutputKind = "classification",
    class_names: Sequence[str] | None = None,
    value_range: tuple[float, float] | None = None,
    feature_names: Sequence[str] | None = None,
    call_args: Sequence[Any] = (),
    call_kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Model:
    """Wraps an NNX module as a :class:`Model`; params are its ``nnx.State``.

    The module is split once (``nnx.split``) into a static graph and its state;
    ``apply`` merges them inside each trace, so it stays pure. The module is
    not edited. Layers are the submodules, named by their attribute path.

    Args:
      module: an ``nnx.Module`` in evaluation mode (``module.eval()``) whose call
        maps ``(N, *input_shape)`` to ``(N, K)`` or ``(N,)``.
      input_shape: per-sample input shape.
      output_kind, class_names, value_range, feature_names: see :class:`Model`.
      call_args, call_kwargs: further arguments of the call, passed after ``x`` on
        every ``apply`` and ``tap``: ``module(x, *call_args, **call_kwargs)``, e.g.
        ``call_args=(nnx.Rngs(0),)`` for ``__call__(self, x, rngs)``. They are fixed,
        not inputs; graph nodes among them (an ``nnx.Rngs``) are split once and
        merged afresh in every trace, so a deterministic model that only passes
        them through stays pure under ``jax.jit`` / ``vmap`` / ``grad``.

    Raises:
      TypeError: the call needs arguments besides ``x`` that ``call_args`` /
        ``call_kwargs`` do not give, or it returns a dict or a tuple rather than one array.
      TrainingModeError: a BatchNorm uses batch statistics, a Dropout is active,
        or the call writes a Variable (call ``module.eval()`` first).
    """
    spec = _spec(input_shape, value_range, feature_names)
    label = type(module).__name__
    call_args = tuple(call_args)
    call_kwargs = dict(call_kwargs or {})
    _check_signature(module.__call__, f"{label}.__call__", call_args, call_kwargs)
    graphdef, state = nnx.split(module)
    fresh_args = _nnx_call_args(call_args, call_kwargs)
    _nnx_check(graphdef, state, fresh_args, spec, label)

    def apply(state, x):
        args, kwargs = fresh_args()
        return _as_2d(nnx.merge(graphdef, state)(x, *args, **kwargs))

    def tap(state, x, deltas):
        mod = nnx.merge(graphdef, state)
        record = _Recorder(deltas)
        for path, sub in _nnx_submodules(mod):
            object.__setattr__(sub, "_explain_tap", (path, record))
            object.__setattr__(sub, "__class__", _tapped_class(type(sub)))
        args, kwargs = fresh_args()
        return _as_2d(mod(x, *args, **kwargs)), record.acts

    return Model(
        apply=apply,
        params=state,
        input_spec=spec,
        output_kind=output_kind,
        class_names=None if class_names is None else tuple(class_names),
        tap=tap,
        layer_names=_layer_order(tap, state, spec),
        name=name or label,
    )
