"""The library calls behind each verb: requests checked into jobs on the event loop, jobs run in batches.

A job is one request, checked on the host before it is queued (instances, target, labels, method and
options against the registry's signature, the caps), so a malformed request fails alone with ``422`` and
never reaches a batch. Jobs of one :func:`group` run as one library call: their rows are concatenated,
padded up to the batch's bucket (:meth:`~explain.serve.settings.Settings.bucket`, repeating the first row)
so the compiled shapes are reused, and the results are split back. Samples do not interact (the model
contract in :mod:`explain.model`), so a row's result does not depend on its companions.

Random methods draw with ``key = jax.random.key(seed)``. Those whose pure core names each row's stream
(``row_ids``: the SmoothGrad family, Expected Gradients, GradientSHAP) run that core, compiled once per
options, and draw instance ``i`` of a request from ``fold_in(fold_in(key, s), row_offset + i)``: the
request's ``row_offset`` (default 0) makes a chunk of a larger array draw what its rows draw in one
library call on the whole array (``registry.call(method, model, x_all, key=jax.random.key(seed))``), so
a remote batch job's results do not depend on how it splits the rows; requests of one seed (the chunks of
one job) share a call. Expected Gradients' references are the request's ``references`` (default: its own
instances), so it runs alone. Other random draws (IG's ``"uniform"`` baseline, PGD/APGD) are shaped by
the whole call: such a request runs alone and unpadded, with ``row_offset`` 0 only.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import inspect
import io
import json
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import numpy as np

from explain import adversarial, specs, targets, viz
from explain.batch import run as batch_run
from explain.gradients import forward
from explain.saliency import registry
from explain.saliency.attribution import Attribution
from explain.serve import payloads
from explain.serve.errors import invalid
from explain.serve.settings import Settings

# Parameters of :explain that are not method options.
EXPLAIN_KEYS = frozenset({"method", "target", "labels", "seed", "output", "heatmap", "row_offset", "references"})
# Parameters of :attack that are not options of the attack function.
ATTACK_KEYS = frozenset({"attack", "eps", "norm", "seed", "output"})
ATTACKS: dict[str, Callable[..., Any]] = {"fgsm": adversarial.fgsm, "pgd": adversarial.pgd, "apgd": adversarial.apgd}
# Attack arguments the server passes itself (never options).
_ATTACK_RESERVED = frozenset({"model", "x", "eps", "key", "target", "labels", "goal", "norm"})
_ATTACK_RESERVED |= {"memory_budget", "show_progress"}
STEP_OPTIONS = ("steps", "start_steps", "max_steps")
SAMPLE_OPTIONS = ("n_samples",)


@dataclasses.dataclass(frozen=True, eq=False)
class Served:
    """A served model: its URL name, the resolved spec and the registry methods it can run."""

    name: str
    resolved: specs.Resolved
    methods: tuple[str, ...]

    @property
    def model(self) -> Any:
        return self.resolved.model

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return self.resolved.class_names

    @property
    def is_image(self) -> bool:
        shape = self.model.input_spec.shape
        return len(shape) == 3 and shape[2] in (1, 3)


def serve(resolved: specs.Resolved) -> Served:
    """The registry methods ``resolved.model`` can run (Grad-CAM needs layers, Blur IG images, ...)."""
    return Served(resolved.name, resolved, registry.usable(resolved.model))


@dataclasses.dataclass(frozen=True, eq=False)
class Job:
    """One checked request.

    Attributes:
      served: the model.
      verb: ``"predict"``, ``"explain"`` or ``"attack"``.
      x: ``(n, *input_shape)`` float32 instances.
      method: the registry method or the attack (``""`` for predict).
      options: the method's or attack's options, validated (defaults not merged in).
      target: ``None``, a target name (``"pred"``, ``"all"``, ``"loss"``, ...) or ``(n,)`` int classes.
      labels: ``(n,)`` / ``(n, K)`` labels, or ``None``.
      seed: the request's seed (random methods and attacks).
      alone: runs in a call of its own (random, or options that are arrays).
      pad: padded to a bucket when it runs.
      rowwise: runs the method's pure core with ``row_ids = row_offset + arange(n)`` (module docstring).
      row_offset: the global number of the first instance (its random stream).
      references: Expected Gradients' reference set ``(m, *input_shape)``, else ``None``.
      group: jobs of equal groups may share a call; ``None`` when :attr:`alone`.
    """

    served: Served
    verb: str
    x: np.ndarray
    method: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    target: Any = None
    labels: np.ndarray | None = None
    seed: int = 0
    alone: bool = False
    pad: bool = True
    eps: float = 0.0
    norm: str = "linf"
    rowwise: bool = False
    row_offset: int = 0
    references: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    @property
    def group(self) -> Hashable | None:
        if self.alone:
            return None
        target = "class" if isinstance(self.target, np.ndarray) else self.target
        labels = None if self.labels is None else ("labels", self.labels.shape[1:], self.labels.dtype.str)
        static = json.dumps(dict(self.options), sort_keys=True, default=str)
        seed = self.seed if self.rowwise else None  # rows of one seed draw per row: they may share a call
        return (self.served.name, self.verb, self.method, static, target, labels, self.eps, self.norm, seed)


# ----------------------------------------------------------------------------- checking requests


def _option_type(info_defaults: Mapping[str, Any], name: str, value: Any) -> Any:
    """``value`` checked against the type of the option's default; JSON lists become tuples (static) or,
    for ``baseline``, a float32 array."""
    default = info_defaults[name]
    field = f"parameters.{name}"
    if name == "baseline" and isinstance(value, list | dict):
        return payloads.decode_array(value, field).astype(np.float32)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise invalid(f"expected {type(default).__name__} (like the default {default!r}), got {value!r}", field)
    return tuple(value) if isinstance(value, list) else value


def _check_caps(options: Mapping[str, Any], settings: Settings, prefix: str = "parameters") -> None:
    caps = [(name, "max_steps") for name in STEP_OPTIONS] + [(name, "max_samples") for name in SAMPLE_OPTIONS]
    caps.append(("restarts", "max_restarts"))
    for name, cap in caps:
        value = options.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            refused = settings.over_cap(cap, name, value)
            if refused is not None:
                raise invalid(refused, f"{prefix}.{name}")


def method_options(served: Served, method: str, given: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """``given`` checked against ``method``'s signature (names, types), the caps and its cost per instance.

    Raises:
      ServeError: ``422`` naming ``parameters.method`` or ``parameters.<option>``.
    """
    if method not in registry.METHODS:
        raise invalid(f"unknown method {method!r}; expected one of {list(served.methods)}", "parameters.method")
    info = registry.METHODS[method]
    if method not in served.methods:
        try:
            info.check_model(served.model)
        except ValueError as e:
            raise invalid(str(e), "parameters.method") from None
    defaults = info.defaults
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise invalid(
            f"unknown option {unknown[0]!r} for {method!r}; expected some of {sorted(defaults)}",
            f"parameters.{unknown[0]}",
        )
    options = {k: _option_type(defaults, k, v) for k, v in given.items()}
    _check_caps(options, settings)
    inner = options.get("method_options")
    if isinstance(inner, dict):
        _check_caps(inner, settings, "parameters.method_options")
    try:
        cost = info.rows_per_sample(served.model, {**defaults, **options})
    except (ValueError, TypeError, KeyError) as e:
        raise invalid(f"invalid options for {method!r}: {e}", "parameters") from None
    refused = settings.over_cap("max_rows_per_instance", "the model rows one instance costs with these options", cost)
    if refused is not None:
        raise invalid(refused, "parameters")
    return options


def _target(value: Any, n: int) -> Any:
    """A JSON target as the library takes it: names stay, an int or a list of ints becomes ``(n,)`` ints."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise invalid(
            "expected a class index, a list of them, 'pred', 'all' or 'loss', got a boolean", "parameters.target"
        )
    if isinstance(value, int):
        return np.full((n,), value, np.int64)
    a = payloads.decode_array(value, "parameters.target")
    if not np.issubdtype(a.dtype, np.integer):
        raise invalid(f"expected integer class indices, got {a.dtype}", "parameters.target")
    return a


def _labels(value: Any) -> np.ndarray | None:
    return None if value is None else payloads.decode_array(value, "parameters.labels")


def _bind_target(served: Served, target: Any, labels: Any, n: int, *, allow_all: bool) -> None:
    """The library's own host-side check of a target and labels (classes in range, label shapes)."""
    try:
        targets.resolve(served.model, target, n, labels=labels, allow_all=allow_all)
    except (ValueError, TypeError) as e:
        field = "parameters.labels" if "label" in str(e) else "parameters.target"
        raise invalid(str(e), field) from None


def explain_job(served: Served, x: np.ndarray, parameters: Mapping[str, Any], settings: Settings) -> Job:
    """A checked :explain request (see :class:`explain.serve.schemas.ExplainParameters`)."""
    method = parameters.get("method") or "vanilla_gradient"
    options = method_options(served, method, {k: v for k, v in parameters.items() if k not in EXPLAIN_KEYS},
                             settings)  # fmt: skip
    info = registry.METHODS[method]
    n = x.shape[0]
    target, labels = _target(parameters.get("target"), n), _labels(parameters.get("labels"))
    _bind_target(served, target, labels, n, allow_all=info.supports_all)
    if parameters.get("heatmap") and not served.is_image:
        raise invalid(f"heatmaps are drawn for image models; {served.name!r} takes {served.model.input_spec.describe()}",
                      "parameters.heatmap")  # fmt: skip
    if parameters.get("heatmap") and isinstance(target, str) and target == targets.ALL:
        raise invalid("heatmaps are drawn for one target per instance, not target='all'", "parameters.heatmap")
    uniform = isinstance(options.get("baseline"), str) and options["baseline"] == "uniform"
    random = info.needs_key or (info.accepts_key and uniform)
    arrays = any(isinstance(v, np.ndarray) for v in options.values())
    rowwise = random and not arrays and _rowwise(served, method, options)
    row_offset = int(parameters.get("row_offset") or 0)
    if random and row_offset and not rowwise:
        raise invalid(f"{method!r} with these options draws for the whole call, not per row, so a row_offset "
                      "cannot place its rows; send row_offset 0 (or a method with per-row draws: "
                      "smoothgrad, vargrad, expected_gradients, ...)", "parameters.row_offset")  # fmt: skip
    references = _references(served, parameters.get("references"), info.needs_references)
    return Job(served, "explain", x, method, options, target, labels, int(parameters.get("seed") or 0),
               alone=(random and not rowwise) or arrays or info.needs_references,
               pad=not (arrays or (random and not info.needs_key)),
               rowwise=rowwise, row_offset=row_offset, references=references)  # fmt: skip


def _rowwise(served: Served, method: str, options: Mapping[str, Any]) -> bool:
    """Whether ``method``'s pure core draws per row (takes ``row_ids``) and takes ``options``."""
    info = registry.METHODS[method]
    if info.core is None or "row_ids" not in inspect.signature(info.core).parameters:
        return False
    try:
        info.core_options(served.model, info.check_options(dict(options)))
    except ValueError:  # e.g. a wrapped method on the layer tap: the public method handles it
        return False
    return True


def _references(served: Served, value: Any, needed: bool) -> np.ndarray | None:
    """``parameters.references`` as ``(m, *input_shape)`` float32 (``None``: the request's own instances)."""
    if value is None:
        return None
    if not needed:
        raise invalid("only methods that draw baselines from a reference set (expected_gradients, gradient_shap) "
                      "take references", "parameters.references")  # fmt: skip
    a = payloads.decode_array(value, "parameters.references").astype(np.float32)
    shape = served.model.input_spec.shape
    if a.ndim != len(shape) + 1 or a.shape[1:] != shape or a.shape[0] < 1 or not np.isfinite(a).all():
        raise invalid(f"expected finite references of shape (m >= 1, {', '.join(map(str, shape))}), got "
                      f"{a.shape}", "parameters.references")  # fmt: skip
    return a


def attack_job(served: Served, x: np.ndarray, labels: Any, parameters: Mapping[str, Any], settings: Settings) -> Job:
    """A checked :attack request (see :class:`explain.serve.schemas.AttackParameters`)."""
    name = parameters["attack"]
    fn = ATTACKS[name]
    allowed = {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.kind == p.KEYWORD_ONLY}
    allowed = {k: v for k, v in allowed.items() if k not in _ATTACK_RESERVED}
    given = {k: v for k, v in parameters.items() if k not in ATTACK_KEYS and v is not None}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise invalid(f"unknown option {unknown[0]!r} for {name!r}; expected some of {sorted(allowed)}",
                      f"parameters.{unknown[0]}")  # fmt: skip
    options = {k: _option_type(allowed, k, v) if allowed[k] is not None else v for k, v in given.items()}
    _check_caps(options, settings)  # steps: PGD/APGD iterations (--max-steps); restarts (--max-restarts)
    if served.model.output_kind != "classification":
        raise invalid(
            f"attacks need a classification model; {served.name!r} is a regression model", "parameters.attack"
        )
    labels = None if labels is None else payloads.decode_array(labels, "labels")
    if labels is not None:
        try:
            targets.resolve(served.model, "loss", x.shape[0], labels=labels)
        except (ValueError, TypeError) as e:
            raise invalid(str(e), "labels") from None
    random = name != "fgsm"
    return Job(served, "attack", x, name, options, None, labels, int(parameters.get("seed") or 0),
               alone=random, pad=not random, eps=float(parameters["eps"]), norm=parameters.get("norm", "linf"))  # fmt: skip


# ----------------------------------------------------------------------------- running jobs


@dataclasses.dataclass(frozen=True)
class Explained:
    """One job's share of an :explain call: values ``(n, ...)``, deltas ``(n[, K])`` or ``None``, outputs ``(n, K)``."""

    values: np.ndarray
    delta: np.ndarray | None
    outputs: np.ndarray
    options: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Attacked:
    """One job's share of an :attack call."""

    x_adv: np.ndarray
    norms: np.ndarray
    success: np.ndarray
    outputs_clean: np.ndarray
    outputs_adv: np.ndarray


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` padded to ``size`` rows by repeating its first row (its result is dropped)."""
    if a.shape[0] >= size:
        return a
    return np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)])


def _merged(jobs: list[Job], attr: str, size: int) -> Any:
    """The jobs' per-row ``attr`` concatenated and padded, or the first job's (non-array) value."""
    first = getattr(jobs[0], attr)
    if not isinstance(first, np.ndarray):
        return first
    return _pad(np.concatenate([getattr(j, attr) for j in jobs]), size)


def _split(a: np.ndarray | None, jobs: list[Job]) -> list[np.ndarray | None]:
    if a is None:
        return [None] * len(jobs)
    bounds = np.cumsum([0] + [j.rows for j in jobs])
    return [a[s:e] for s, e in zip(bounds[:-1], bounds[1:], strict=True)]


def _size(jobs: list[Job], bucket: Callable[[int], int]) -> tuple[np.ndarray, int]:
    x = np.concatenate([j.x for j in jobs]) if len(jobs) > 1 else jobs[0].x
    return x, bucket(x.shape[0]) if jobs[0].pad else x.shape[0]


def run_predict(jobs: list[Job], bucket: Callable[[int], int]) -> list[np.ndarray]:
    """The model's outputs ``(n, K)`` per job, from one padded forward pass."""
    x, size = _size(jobs, bucket)
    outputs = np.asarray(forward(jobs[0].served.model, _pad(x, size)))[: x.shape[0]]
    return _split(outputs, jobs)


def run_explain(jobs: list[Job], bucket: Callable[[int], int]) -> list[Explained]:
    """One ``registry.call`` for every job (they share a group, or there is one), split back per job.

    A predicted-class target is passed as the classes predicted by the forward pass that gives the
    response's predictions: the library freezes ``"pred"`` at the same argmax, so nothing changes but
    one forward pass fewer.
    """
    job = jobs[0]
    model, info = job.served.model, registry.METHODS[job.method]
    x, size = _size(jobs, bucket)
    xp = _pad(x, size)
    outputs = np.asarray(forward(model, xp))
    target = _merged(jobs, "target", size)
    frozen = target is None or (isinstance(target, str) and target == "pred")
    if frozen and model.output_kind == "classification":
        target = outputs.argmax(axis=1).astype(np.int32)
    labels = _merged(jobs, "labels", size)
    references = job.x if job.references is None else job.references
    if job.rowwise:
        row_ids = _pad(np.concatenate([j.row_offset + np.arange(j.rows) for j in jobs]), size)
        a = _run_core(job, xp, target, labels, row_ids, references)
    else:
        key = jax.random.key(job.seed) if info.accepts_key and job.alone else None
        a = registry.call(
            job.method, model, xp, target=target, labels=labels, key=key,
            references=references if info.needs_references else None, **job.options,
        )  # fmt: skip
    n = x.shape[0]
    values = np.asarray(a.values)[:n]
    delta = None if a.convergence_delta is None else np.asarray(a.convergence_delta)[:n]
    options = {**info.defaults, **job.options}
    return [
        Explained(v, d, o, options)
        for v, d, o in zip(_split(values, jobs), _split(delta, jobs), _split(outputs[:n], jobs), strict=True)
    ]


# Compiled methods by (model, method, options), least recently used first. Options come from clients, so the
# cache is bounded: an unbounded one would grow by one set of executables per distinct option value sent.
_CORES: collections.OrderedDict[Hashable, tuple[Any, batch_run.Method]] = collections.OrderedDict()
MAX_CORES = 32


def _method(job: Job) -> batch_run.Method:
    """The batch engine's compiled per-row core for the job's method and options (one device), cached."""
    # id() is safe as a key: the entry holds the Served object, so its id cannot be reused while cached
    cache_key = (id(job.served), job.method, json.dumps(dict(job.options), sort_keys=True, default=str))
    if cache_key in _CORES:
        _CORES.move_to_end(cache_key)
    else:
        built = batch_run.build_method(job.served.model, job.method, job.options, None, None, None, 1)
        _CORES[cache_key] = (job.served, built)
        while len(_CORES) > MAX_CORES:
            _CORES.popitem(last=False)
    return _CORES[cache_key][1]


def _run_core(
    job: Job, x: np.ndarray, target: Any, labels: Any, row_ids: np.ndarray, references: np.ndarray
) -> Attribution:
    """The job's core on ``x (R, ...)`` with ``row_ids (R,)``: the batch engine's one call per shard
    (:func:`explain.batch.run.attribute_shard`, chunked within the memory budget, the last chunk padded)."""
    method = dataclasses.replace(_method(job), key=jax.random.key(job.seed), references=references)
    att, _, _ = batch_run.attribute_shard(method, job.served.model, x, row_ids, target, labels, shard=0)
    return jax.tree.map(np.asarray, att)


def run_attack(jobs: list[Job], bucket: Callable[[int], int]) -> list[Attacked]:
    """One attack call for every job (FGSM merges; PGD and APGD run one request each, unpadded)."""
    job = jobs[0]
    x, size = _size(jobs, bucket)
    key = {} if job.method == "fgsm" else {"key": jax.random.key(job.seed)}
    r = ATTACKS[job.method](
        job.served.model, _pad(x, size), eps=job.eps, norm=job.norm, labels=_merged(jobs, "labels", size),
        **key, **job.options,
    )  # fmt: skip
    n = x.shape[0]
    parts = [_split(np.asarray(a)[:n], jobs) for a in (r.x_adv, r.norms, r.success, r.outputs_clean, r.outputs_adv)]
    return [Attacked(*p) for p in zip(*parts, strict=True)]


_RUNNERS = {"predict": run_predict, "explain": run_explain, "attack": run_attack}


def run_jobs(jobs: list[Job], *, bucket: Callable[[int], int]) -> list[Any]:
    """Results of a batch of jobs of one group (what :class:`~explain.serve.batcher.Batcher` calls).

    A ``ValueError``/``TypeError`` from the library (a bad option value, found only by the method) is
    that request's ``422``; when several requests shared the call, each is retried alone, so only the
    one that was wrong fails.
    """
    run = _RUNNERS[jobs[0].verb]
    try:
        return run(jobs, bucket)
    except (ValueError, TypeError) as e:
        if len(jobs) == 1:
            return [invalid(str(e), "parameters")]
    return [r for j in jobs for r in run_jobs([j], bucket=bucket)]


def heatmap_png_b64(values: np.ndarray, *, signed: bool) -> str:
    """One instance's attribution ``(H, W, C)`` as a base64 PNG (PAIR's percentile scaling, :func:`explain.viz.to_image`)."""
    buf = io.BytesIO()
    viz.to_image(values, signed=signed).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def warm_up(served: Served, settings: Settings, verbs: Callable[[Job], Any]) -> int:
    """Runs predict and each of ``settings.warmup_methods`` at every bucket (compiling them); returns the calls.

    ``verbs`` runs one job as a request would (``run_jobs`` with the server's buckets).
    """
    model = served.model
    lo = model.input_spec.value_range[0] if model.input_spec.value_range is not None else 0.0
    calls = 0
    for size in settings.buckets:
        x = np.full((size, *model.input_spec.shape), lo, np.float32)
        verbs(Job(served, "predict", x))
        calls += 1
        for method in settings.warmup_methods:
            if method in served.methods and not registry.METHODS[method].needs_key:
                verbs(Job(served, "explain", x, method))
                calls += 1
    return calls
