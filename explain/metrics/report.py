"""Which map can I trust? Every requested metric for every method, on one batch: the table behind
``python -m explain evaluate`` and the dashboard page "Which map to trust".

:func:`evaluate` computes each method's maps once (:func:`explain.saliency.registry.call`,
timed), then every requested metric from those maps, and returns a :class:`Report`: one row
per method, one column per metric (mean over samples, NaN-aware), the per-sample values, a
deletion curve per method, the maps' seconds per batch and their cost as a multiple of one
forward pass. :func:`write` saves it as CSV, JSON and a PNG report card (:func:`report_card`:
methods × metrics, each column coloured by rank).

Metrics come from one table, :data:`METRICS` (name -> :class:`MetricInfo`, in display order);
each wraps one function of :mod:`explain.metrics` with the settings below, overridable per
metric by ``metric_options``:

* faithfulness: deletion and insertion AUC (20 steps, zero baseline), ROAD (MoRF),
  deletion towards a Gaussian-blurred copy (sigma :data:`BLUR_SIGMA` pixels) and each deletion AUC
  as a multiple of a uniform random map's on the same image (labelled ``deletion_ratio_random`` and
  ``deletion_blur_ratio_random``; opt-in). Zeroing an object's pixels leaves its black silhouette,
  which the model still recognises: on 256 ``shapes`` test images, ``shapes_cnn`` keeps its class
  for 97.7% of images whose whole object mask is zeroed (84.8% towards the blur, 63.3% towards the
  image's mean colour), so a random map's zero-baseline deletion stays low and IG beats it by only
  15% (43% towards the blur, 55% under ROAD);
  faithfulness correlation (64 subsets of 10%), infidelity (32 perturbations, Captum's
  ``normalize=True`` so maps of different scales compare; perturbations enter as ``Iᵀa``
  for every method, as Quantus does);
* stability: max-sensitivity and the local Lipschitz estimate (10 perturbations, radius 0.02;
  they rerun the method, so they cost ``10×`` its maps);
* localisation (only with masks, images): relevance mass (also against the mask grown by one
  pixel), relevance rank, pointing game, top-k intersection, mask AUC;
* complexity: Gini sparseness and entropy of the per-pixel relevance;
* randomisation: Spearman (absolute) and SSIM (images) between the map of the trained model and
  the map once every layer is randomised: the last row of
  :func:`~explain.metrics.parameter_randomisation`'s cascade (top layer first; Adebayo et al.
  2018), which reruns the method once per layer and once more.

Metrics that cannot run on the inputs (localisation without masks, image metrics on tabular
models, randomisation of params with no layer groups) are left out and listed in
:attr:`Report.skipped` with the reason.

Randomness. Method ``m``'s key is ``fold_in(key, index of m in the registry)`` (as the
``saliency`` command: the same seed gives the same maps), metric ``k``'s
``fold_in(that key, 1 + index of k in METRICS)``, except for faithfulness correlation and
infidelity, whose random subsets and perturbations do not depend on the map: they draw from
``fold_in(key, SHARED_KEYS + index of k)``, the same for every method, so the model's half of
each (the output drops, :func:`~explain.metrics.subset_drops`,
:func:`~explain.metrics.perturbation_drops`) runs once per report rather than once per method
(on 256 ``shapes`` images, 96 of the ~140 forward passes over the batch each method cost), and
the methods are compared on the same draws. A row does not depend on which other methods or
metrics were asked for, and the same key and inputs give the same numbers.

Timing. ``seconds`` is the maps' wall time for the whole batch without compilation: the first
call's time less JAX's compile events when that leaves more than :data:`RETIME_BELOW_S`, else
(where compilation dominates) a second, compiled call timed on its own. ``cost`` divides it by
one compiled forward pass over the same batch.

References:
  Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim. Sanity Checks for Saliency Maps. NeurIPS 2018.
  Hedström et al. Quantus: An Explainable AI Toolkit for Responsible Evaluation of Neural Network
  Explanations and Beyond. JMLR 2023 (the families and the direction of each metric).
  (each metric's own paper in its module)
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jax
import numpy as np
from jaxtyping import Array, Bool, Float
from PIL import Image

from explain import chunking, specs
from explain.arrays import Batch
from explain.checks import check_key
from explain.gradients import forward
from explain.io import atomic_write_bytes, atomic_write_text
from explain.metrics import complexity, faithfulness, localisation, randomisation, stability
from explain.metrics.faithfulness import Curve
from explain.metrics.relevance import pixel_relevance
from explain.model import Model, as_model
from explain.saliency import registry

if TYPE_CHECKING:
    import pandas

Family = Literal["faithfulness", "stability", "localisation", "complexity", "randomisation"]
FAMILIES: tuple[str, ...] = ("faithfulness", "stability", "localisation", "complexity", "randomisation")
# A first call whose time, less compilation, is below this is timed again compiled: cheap to repeat, and the
# untracked overheads of a first call (shape checks, tracing outside jit) would be a large share of it.
RETIME_BELOW_S = 2.0
# Keys of the metrics shared by every method are fold_in(key, SHARED_KEYS + metric index): far above any method index.
SHARED_KEYS = 1 << 20
UP, DOWN = "↑", "↓"
_CURVE_STEPS = 20  # deletion and insertion: explain.metrics.deletion's default steps
# The blurred deletion baseline's Gaussian sigma, in pixels (Petsiuk et al.'s blurred canvas; ~1/13 of a 64-px side).
BLUR_SIGMA = 5.0
_DELETION_VARIANTS = ("deletion_ratio_random", "deletion_auc_blur", "deletion_blur_ratio_random")


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """One metric of the report.

    Attributes:
      name: its key in :data:`METRICS` and its column, e.g. ``"deletion_auc"``.
      family: ``"faithfulness"``, ``"stability"``, ``"localisation"``, ``"complexity"`` or ``"randomisation"``.
      higher_is_better: the direction shown in the header (↑ or ↓) and used by :meth:`Report.ranks`.
      sentence: one sentence for the dashboard and ``--help``.
      needs_masks: needs object masks ``(N, H, W)`` (localisation).
      images_only: needs image inputs ``(N, H, W, C)``.
    """

    name: str
    family: str
    higher_is_better: bool
    sentence: str
    needs_masks: bool = False
    images_only: bool = False

    @property
    def column(self) -> str:
        """The table's header: the name and its direction, e.g. ``"deletion_auc (↓)"``."""
        return f"{self.name} ({UP if self.higher_is_better else DOWN})"


METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo(
            "deletion_auc", "faithfulness", False,
            "Area under the predicted class's probability as the most relevant pixels are zeroed first: "
            "a faithful map makes it fall fast.",
        ),
        MetricInfo(
            "deletion_ratio_random", "faithfulness", False,
            "Deletion AUC (zero baseline) over that of a uniform random map on the same image: below 1 beats "
            "random; zeroed pixels leave the object's silhouette, which flatters a random map.",
        ),
        MetricInfo(
            "deletion_auc_blur", "faithfulness", False,
            "Deletion AUC with the removed pixels taken from a blurred copy of the image (Gaussian, 5 px) "
            "instead of zero, so no black silhouette of the object is left behind.",
            images_only=True,
        ),
        MetricInfo(
            "deletion_blur_ratio_random", "faithfulness", False,
            "Deletion AUC towards the blurred copy over that of a uniform random map: below 1 beats random.",
            images_only=True,
        ),
        MetricInfo(
            "insertion_auc", "faithfulness", True,
            "Area under the probability as the most relevant pixels are put back into a blank input first: "
            "a faithful map makes it rise fast.",
        ),
        MetricInfo(
            "road_morf", "faithfulness", False,
            "Deletion with the removed pixels filled in from their neighbours instead of zeroed (ROAD), so the "
            "hole's shape tells the model nothing.",
            images_only=True,
        ),
        MetricInfo(
            "faithfulness_correlation", "faithfulness", True,
            "Correlation between the relevance of random pixel subsets and the logit's drop when they are zeroed.",
        ),
        MetricInfo(
            "infidelity", "faithfulness", False,
            "Squared error between the output change the map predicts for small random perturbations and the "
            "actual change (map rescaled optimally).",
        ),
        MetricInfo(
            "max_sensitivity", "stability", False,
            "Largest relative change of the map when the input moves by at most 0.02 per feature.",
        ),
        MetricInfo(
            "local_lipschitz", "stability", False,
            "Largest change of the map per unit change of the input, over small random moves.",
        ),
        MetricInfo(
            "relevance_mass", "localisation", True,
            "Share of the map's relevance that falls inside the object's mask.",
            needs_masks=True, images_only=True,
        ),
        MetricInfo(
            "relevance_mass_grown", "localisation", True,
            "Relevance mass against the mask grown by one pixel: how much of a shortfall the mask's "
            "anti-aliased edge explains.",
            needs_masks=True, images_only=True,
        ),
        MetricInfo(
            "relevance_rank", "localisation", True,
            "Share of the K most relevant pixels inside the mask, K the mask's size.",
            needs_masks=True, images_only=True,
        ),
        MetricInfo(
            "pointing_game", "localisation", True,
            "How often the map's single most relevant pixel lies on the object.",
            needs_masks=True, images_only=True,
        ),
        MetricInfo(
            "top_k_intersection", "localisation", True,
            "Share of the 100 most relevant pixels that lie inside the mask (all pixels of smaller images).",
            needs_masks=True, images_only=True,
        ),
        MetricInfo(
            "mask_auc", "localisation", True,
            "How well the relevance alone separates object pixels from background (ROC AUC; 0.5 is chance).",
            needs_masks=True, images_only=True,
        ),
        MetricInfo(
            "sparseness", "complexity", True,
            "Gini index of the map's magnitudes: high when a few pixels carry the relevance.",
        ),
        MetricInfo(
            "entropy", "complexity", False,
            "Entropy of the map's magnitudes as a distribution: low when the relevance is concentrated.",
        ),
        MetricInfo(
            "randomisation_spearman", "randomisation", False,
            "Rank correlation between the maps of the trained and the fully randomised model: a map that "
            "explains the model must change when its weights do.",
        ),
        MetricInfo(
            "randomisation_ssim", "randomisation", False,
            "Structural similarity between the maps of the trained and the fully randomised model.",
            images_only=True,
        ),
    )
}  # fmt: skip
DEFAULT_METRICS: tuple[str, ...] = (
    "deletion_auc",
    "insertion_auc",
    "faithfulness_correlation",
    "infidelity",
    "relevance_mass",
    "pointing_game",
    "mask_auc",
    "sparseness",
    "entropy",
)
# The settings each metric runs with (merged under the caller's metric_options): as documented in the module.
_SETTINGS: dict[str, dict[str, Any]] = {
    "infidelity": {"normalize": True},
    "deletion_auc_blur": {"sigma": BLUR_SIGMA},
    "relevance_mass_grown": {"pixels": 1},
    "top_k_intersection": {"k": 100},
}


@dataclasses.dataclass(frozen=True)
class Report:
    """Every metric of every method on one batch.

    Attributes:
      model: the model's name.
      methods: ``M`` registry names, the rows.
      metrics: ``K`` metric names computed (keys of :data:`METRICS`, in its order), the columns.
      values: ``(M, K)`` mean over samples, ignoring NaN (a sample whose metric is undefined).
      per_sample: ``(method, metric) -> (N,)``.
      deletion: method -> its deletion :class:`~explain.metrics.Curve` (``fractions (S+1,)``, ``scores (N, S+1)``).
      seconds: method -> seconds for its maps of the whole batch, compilation excluded.
      cost: method -> ``seconds`` over one forward pass of the batch.
      n: samples.
      seed: the seed of ``key`` when known (the command line's ``--seed``), else -1.
      skipped: metric -> why it was left out (no masks, not an image model, ...).
    """

    model: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    values: np.ndarray
    per_sample: dict[tuple[str, str], np.ndarray]
    deletion: dict[str, Curve]
    seconds: dict[str, float]
    cost: dict[str, float]
    n: int
    seed: int
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_frame(self) -> pandas.DataFrame:
        """Rows = methods; columns = ``"metric (↑)"`` / ``"metric (↓)"``, then ``"seconds"`` and ``"cost"``."""
        import pandas

        frame = pandas.DataFrame(
            self.values,
            index=pandas.Index(self.methods, name="method"),
            columns=[METRICS[k].column for k in self.metrics],
        )
        frame["seconds"] = [self.seconds[m] for m in self.methods]
        frame["cost"] = [self.cost[m] for m in self.methods]
        return frame

    def ranks(self) -> np.ndarray:
        """``(M, K)`` rank of each method per metric column: 1 is best, ties share the better rank, NaN stays NaN."""
        return rank_columns(self.values, [METRICS[k].higher_is_better for k in self.metrics])


def rank_columns(values: Float[np.ndarray, " m k"], higher_is_better: Sequence[bool]) -> Float[np.ndarray, " m k"]:
    """Competition ranks per column: ``1 + #{rows strictly better}``; NaN values get NaN and beat nothing."""
    v = np.where(np.asarray(higher_is_better, bool)[None, :], -values, values)  # smaller is better now
    valid = ~np.isnan(v)
    better = (v[None, :, :] < v[:, None, :]) & valid[None, :, :]  # [i, j, k]: row j beats row i in column k
    return np.where(valid, 1.0 + better.sum(axis=1), np.nan)


# ----------------------------------------------------------------------------- computing the metrics


@dataclasses.dataclass(frozen=True)
class _Batch:
    """What every metric of one run shares: the model, the inputs, the masks and the settings."""

    model: Model
    x: np.ndarray
    masks: np.ndarray | None
    method_options: Mapping[str, Mapping[str, Any]]
    metric_options: Mapping[str, Mapping[str, Any]]
    memory_budget: int | None
    key: jax.Array | None = None
    # metric -> its map-independent half (the output drops), computed for the first method and reused.
    shared: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def shared_key(self, metric: str) -> jax.Array:
        """The key of a metric whose draws do not depend on the map (module docstring: Randomness)."""
        return jax.random.fold_in(self.key, SHARED_KEYS + list(METRICS).index(metric))

    @property
    def image(self) -> bool:
        return len(self.model.input_spec.shape) == 3

    def settings(self, metric: str) -> dict[str, Any]:
        """The keyword arguments of ``metric``'s function: the caller's over :data:`_SETTINGS`."""
        out = {**_SETTINGS.get(metric, {}), **self.metric_options.get(metric, {})}
        given = self.metric_options.get(metric, {})
        pixels = math.prod(self.model.input_spec.shape[:2] if self.image else self.model.input_spec.shape)
        if metric == "top_k_intersection" and "k" not in given:
            out["k"] = min(out["k"], pixels)  # small images: every pixel
        if metric in ("deletion_auc", "insertion_auc") and "steps" not in given and "patch" not in given:
            out["steps"] = min(_CURVE_STEPS, pixels)  # a step per feature of a small tabular model
        return out


MetricFn = Callable[[_Batch, str, str, np.ndarray, jax.Array], Any]  # (batch, metric, method, maps, key) -> (N,)


def _shared_drops(drops_fn: Callable[..., Any], fn: Callable[..., Any], *, drop_settings: tuple[str, ...]) -> MetricFn:
    """A metric with a map-independent model half: ``drops_fn(model, x, *, key, ...)`` runs once per report
    (on the metric's shared key, every method drawing the same subsets or perturbations) and ``fn`` reuses it."""

    def run(b: _Batch, metric: str, method: str, a: np.ndarray, key: jax.Array) -> Any:
        settings, key = b.settings(metric), b.shared_key(metric)
        if metric not in b.shared:
            made = {k: v for k, v in settings.items() if k in drop_settings}
            b.shared[metric] = drops_fn(b.model, b.x, key=key, memory_budget=b.memory_budget, **made)
        return fn(b.model, b.x, a, key=key, memory_budget=b.memory_budget, drops=b.shared[metric], **settings)

    return run


def _insertion(b: _Batch, metric: str, method: str, a: np.ndarray, key: jax.Array) -> Any:
    return faithfulness.insertion(b.model, b.x, a, memory_budget=b.memory_budget, **b.settings(metric)).auc


def _road(b: _Batch, metric: str, method: str, a: np.ndarray, key: jax.Array) -> Any:
    return faithfulness.road(b.model, b.x, a, key=key, memory_budget=b.memory_budget, **b.settings(metric)).auc


def _stability(fn: Callable[..., Any]) -> MetricFn:
    """A stability metric: reruns ``method`` on perturbed inputs with the options its maps were made with."""

    def run(b: _Batch, metric: str, method: str, a: np.ndarray, key: jax.Array) -> Any:
        opts = b.method_options.get(method)
        return fn(
            b.model, b.x, method=method, key=key, options=opts, memory_budget=b.memory_budget, **b.settings(metric)
        )

    return run


def _against_masks(fn: Callable[..., Any], *, grown: bool = False) -> MetricFn:
    """A localisation metric of the maps against the masks (grown by ``pixels`` for ``grown``)."""

    def run(b: _Batch, metric: str, method: str, a: np.ndarray, key: jax.Array) -> Any:
        opts = b.settings(metric)
        masks = localisation.grow(b.masks, opts.pop("pixels")) if grown else b.masks
        return fn(a, np.asarray(masks), **opts)

    return run


def _of_relevance(fn: Callable[..., Any]) -> MetricFn:
    """A complexity metric of the per-pixel relevance ``Σ_c |a|`` (of ``a`` itself for tabular maps)."""

    def run(b: _Batch, metric: str, method: str, a: np.ndarray, key: jax.Array) -> Any:
        return fn(pixel_relevance(a) if b.image else a, **b.settings(metric))

    return run


_COMPUTE: dict[str, MetricFn] = {
    "insertion_auc": _insertion,
    "road_morf": _road,
    "faithfulness_correlation": _shared_drops(
        faithfulness.subset_drops,
        faithfulness.faithfulness_correlation,
        drop_settings=("target", "labels", "n_subsets", "subset_fraction", "baseline", "patch", "score"),
    ),
    "infidelity": _shared_drops(
        faithfulness.perturbation_drops,
        faithfulness.infidelity,
        drop_settings=("target", "labels", "n_samples", "noise_std", "score"),
    ),
    "max_sensitivity": _stability(stability.max_sensitivity),
    "local_lipschitz": _stability(stability.local_lipschitz),
    "relevance_mass": _against_masks(localisation.relevance_mass),
    "relevance_mass_grown": _against_masks(localisation.relevance_mass, grown=True),
    "relevance_rank": _against_masks(localisation.relevance_rank),
    "pointing_game": _against_masks(localisation.pointing_game),
    "top_k_intersection": _against_masks(localisation.top_k_intersection),
    "mask_auc": _against_masks(localisation.mask_auc),
    "sparseness": _of_relevance(complexity.sparseness),
    "entropy": _of_relevance(complexity.entropy),
}  # deletion_auc comes from the deletion curve every report keeps; randomisation from one cascade per method


def _randomisation(b: _Batch, method: str, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(spearman, ssim)`` per sample once every layer is randomised (the cascade's last row)."""
    settings = {**b.settings("randomisation_spearman"), **b.settings("randomisation_ssim")}
    settings.setdefault("cascade", True)
    r = randomisation.parameter_randomisation(
        b.model,
        b.x,
        method=method,
        options=b.method_options.get(method),
        key=key,
        memory_budget=b.memory_budget,
        **settings,
    )
    return np.asarray(r.spearman)[-1], np.asarray(r.ssim)[-1]


def _skip_reason(info: MetricInfo, model: Model, masks: Any) -> str | None:
    if info.images_only and len(model.input_spec.shape) != 3:
        return f"needs image inputs (N, H, W, C); the model takes {model.input_spec.describe()}"
    if info.needs_masks and masks is None:
        return "needs object masks (N, H, W); none were given"
    if info.family == "randomisation":
        try:
            randomisation.parameter_groups(model)
        except ValueError as e:
            return str(e)
    return None


# ----------------------------------------------------------------------------- checks


def _check_names(what: str, names: Any, known: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"expected {what} as a sequence of names such as {list(known[:2])}, got {names!r}")
    out = tuple(dict.fromkeys(names))
    bad = [n for n in out if n not in known]
    if bad or not out:
        raise ValueError(f"unknown {what} {bad}; expected a non-empty subset of {list(known)}")
    return out


def _check_masks(masks: Any, x: np.ndarray, model: Model) -> np.ndarray | None:
    if masks is None:
        return None
    m = np.asarray(masks)
    shape = tuple(model.input_spec.shape)
    if len(shape) != 3:
        raise ValueError(
            f"masks need an image model (inputs (N, H, W, C)); the model takes {model.input_spec.describe()}"
        )
    if m.dtype != np.bool_ or m.shape != (len(x), *shape[:2]):
        raise ValueError(f"expected masks as a bool array of shape {(len(x), *shape[:2])}, got {m.dtype} {m.shape}")
    return m


def _check_options(
    what: str, options: Any, names: Sequence[str], check: Callable[[str, Mapping[str, Any]], Any]
) -> dict[str, dict[str, Any]]:
    """``{name: options}`` for some of ``names``, each checked by ``check(name, options)``."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
        raise TypeError(f"expected {what} as a mapping of name -> mapping of options, got {options!r}")
    bad = sorted(set(options) - set(names))
    if bad:
        raise ValueError(f"{what} names {bad}, which this run does not compute; expected some of {list(names)}")
    for name, opts in options.items():
        check(name, opts)
    return {k: dict(v) for k, v in options.items()}


# ----------------------------------------------------------------------------- timing


@contextmanager
def _compile_seconds() -> Iterator[list[float]]:
    """Collects the seconds JAX spends tracing, lowering and compiling inside the block."""
    spent: list[float] = []

    def on_event(event: str, seconds: float, **_: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            spent.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        yield spent
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time without compilation (module docstring: Timing)."""
    with _compile_seconds() as spent:
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        cold = time.perf_counter() - t0
    if cold - sum(spent) > RETIME_BELOW_S:
        return out, cold - sum(spent)
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- evaluate


def _nanmean(v: np.ndarray) -> float:
    """Mean of the finite values; NaN (without numpy's empty-slice warning) when there are none."""
    ok = np.isfinite(v)
    return float(v[ok].mean()) if ok.any() else math.nan


def _seed_of(key: jax.Array) -> int:
    """The seed of ``jax.random.key(seed)`` for small non-negative seeds, else -1 (recorded, not used)."""
    data = np.asarray(jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    flat = data.reshape(-1).astype(np.int64)
    return int(flat[-1]) if flat.size == 2 and flat[0] == 0 else -1


def evaluate(
    model: Model | Any,
    x: Batch,
    *,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    masks: Bool[np.ndarray | Array, " n h w"] | None = None,
    key: jax.Array,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Report:
    """Every requested metric of every requested method's maps of ``x``, explaining the predicted class.

    Each method's maps are computed once (timed, compilation excluded), then each metric from
    them (stability and randomisation rerun the method, as they must). The deletion curve of
    every method is kept for plotting. Metrics that cannot run here (localisation without
    ``masks``, image metrics on a tabular model) are left out and listed in ``Report.skipped``.

    Args:
      model: a :class:`~explain.model.Model`, a bundle, or a spec string (:func:`explain.specs.resolve`).
      x: ``(N, *input_shape)``.
      methods: registry names (default: every method the model can run, in registry order).
      metrics: names in :data:`METRICS` (default :data:`DEFAULT_METRICS`); computed in :data:`METRICS`' order.
      masks: ``(N, H, W)`` bool object masks, for the localisation metrics.
      key: PRNG key (module docstring: Randomness).
      options: method name -> its options (e.g. ``{"integrated_gradients": {"steps": 16}}``).
      metric_options: metric name -> keyword arguments of its function (e.g. ``{"deletion_auc": {"steps": 10}}``,
        ``{"max_sensitivity": {"n_samples": 4}}``); ``deletion_auc``'s also shape the deletion curves.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).
      show_progress: a progress bar over methods (and the methods' own).

    Returns:
      :class:`Report` with ``values (M, K)``.

    Raises:
      ValueError / TypeError: before any map is computed: unknown method, metric or option names, a
      method the model cannot run, masks not ``(N, H, W)`` bool, a missing key.

    Example:
      >>> r = evaluate("shapes_cnn", x, masks=split.mask[:64], methods=["integrated_gradients", "grad_cam"],
      ...              key=jax.random.key(0))
      >>> print(r.to_frame())
    """
    name = model.name if isinstance(model, specs.Resolved) else None
    if isinstance(model, str):
        model = specs.resolve(model)
        name = model.name
    m = as_model(model)
    key = check_key(key, what="evaluate")
    chunking.check_budget(memory_budget)
    xv = np.asarray(m.input_spec.validate(x, check_range=False))
    masks = _check_masks(masks, xv, m)
    methods = registry.usable(m) if methods is None else _check_names("methods", methods, list(registry.METHODS))
    for method in methods:
        registry.get(method).check_model(m)
    wanted = DEFAULT_METRICS if metrics is None else _check_names("metrics", metrics, list(METRICS))
    skipped = {k: why for k in wanted if (why := _skip_reason(METRICS[k], m, masks)) is not None}
    computed = tuple(k for k in METRICS if k in wanted and k not in skipped)
    method_options = _check_options("options", options, methods, lambda k, o: registry.get(k).check_options(o))
    metric_opts = _check_options("metric_options", metric_options, computed + ("deletion_auc",), lambda k, o: None)
    b = _Batch(m, xv, masks, method_options, metric_opts, memory_budget, key)

    _, forward_seconds = _timed(lambda: forward(m, xv, memory_budget=memory_budget))
    per_sample: dict[tuple[str, str], np.ndarray] = {}
    deletion: dict[str, Curve] = {}
    seconds: dict[str, float] = {}
    with chunking.progress(len(methods), enabled=show_progress, desc="methods") as bar:
        for method in methods:
            method_key = jax.random.fold_in(key, list(registry.METHODS).index(method))
            attribution, seconds[method] = _timed(
                lambda method=method, method_key=method_key: registry.call(
                    method, m, xv, key=method_key, memory_budget=memory_budget, show_progress=show_progress,
                    **method_options.get(method, {}),
                ).values
            )  # fmt: skip
            a = np.asarray(attribution)
            deletion[method] = faithfulness.deletion(
                m, xv, a, memory_budget=memory_budget, show_progress=show_progress, **b.settings("deletion_auc")
            )
            per_sample.update(_metrics_of(b, method, a, method_key, computed, deletion[method]))
            bar.update()
    values = np.array([[_nanmean(per_sample[(mt, k)]) for k in computed] for mt in methods], np.float64)
    values = values.reshape(len(methods), len(computed))
    return Report(
        model=name or m.name,
        methods=methods,
        metrics=computed,
        values=values,
        per_sample=per_sample,
        deletion=deletion,
        seconds=seconds,
        cost={k: s / max(forward_seconds, 1e-9) for k, s in seconds.items()},
        n=len(xv),
        seed=_seed_of(key),
        skipped=skipped,
    )


def blurred(x: Float[np.ndarray, " n h w c"], sigma: float) -> Float[np.ndarray, " n h w c"]:
    """Each image Gaussian-blurred over height and width (``sigma`` pixels, borders reflected), channels apart."""
    from scipy import ndimage

    return ndimage.gaussian_filter(np.asarray(x), sigma=(0, sigma, sigma, 0), mode="reflect").astype(x.dtype)


def _deletion_variant(b: _Batch, metric: str, a: np.ndarray, curve: Curve, mine: dict[str, np.ndarray]) -> np.ndarray:
    """The deletion metrics beside ``deletion_auc``: towards a blurred copy, and either AUC over a random map's.

    Both deletions use ``deletion_auc``'s steps and patch. The blurred copy and the random map's AUCs are
    computed once per report (the random map, uniform in ``[0, 1)``, from the metric's shared key); ``mine``
    keeps this method's blurred AUC for the other metric that needs it. The ratio is per sample.
    """
    settings = b.settings("deletion_auc")
    sigma = float(b.settings("deletion_auc_blur")["sigma"])
    blur = metric != "deletion_ratio_random"
    if blur and f"blurred {sigma}" not in b.shared:
        b.shared[f"blurred {sigma}"] = blurred(b.x, sigma)
    baseline: Any = b.shared[f"blurred {sigma}"] if blur else "zero"

    def auc(maps: np.ndarray) -> np.ndarray:
        d = faithfulness.deletion(b.model, b.x, maps, baseline=baseline, memory_budget=b.memory_budget, **settings)
        return np.asarray(d.auc, np.float64)

    if blur and "blur" not in mine:
        mine["blur"] = auc(a)
    own = mine["blur"] if blur else np.asarray(curve.auc, np.float64)
    if metric == "deletion_auc_blur":
        return own
    reference = f"random map deletion_auc towards {f'blur {sigma}' if blur else 'zero'}"
    if reference not in b.shared:
        random_map = jax.random.uniform(b.shared_key("deletion_ratio_random"), b.x.shape, b.x.dtype)
        b.shared[reference] = auc(np.asarray(random_map))
    with np.errstate(divide="ignore", invalid="ignore"):
        return own / b.shared[reference]


def _metrics_of(
    b: _Batch, method: str, a: np.ndarray, method_key: jax.Array, computed: Sequence[str], curve: Curve
) -> dict[tuple[str, str], np.ndarray]:
    """``(method, metric) -> (N,)`` for every computed metric of one method's maps ``a``."""
    out: dict[tuple[str, str], np.ndarray] = {}
    mine: dict[str, np.ndarray] = {}  # this method's intermediate values shared by two metrics
    randomised: tuple[np.ndarray, np.ndarray] | None = None
    for k in computed:
        key = jax.random.fold_in(method_key, 1 + list(METRICS).index(k))
        if k == "deletion_auc":
            value = curve.auc
        elif k in _DELETION_VARIANTS:
            value = _deletion_variant(b, k, a, curve, mine)
        elif METRICS[k].family == "randomisation":
            # One cascade gives both figures; seeded by the first of them so either alone gives the same numbers.
            first = jax.random.fold_in(method_key, 1 + list(METRICS).index("randomisation_spearman"))
            if randomised is None:
                randomised = _randomisation(b, method, first)
            value = randomised[0] if k == "randomisation_spearman" else randomised[1]
        else:
            value = _COMPUTE[k](b, k, method, a, key)
        out[(method, k)] = np.asarray(value, np.float64).reshape(-1)
    return out


# ----------------------------------------------------------------------------- output


def _finite_or_none(v: Any) -> Any:
    """JSON has no NaN: an undefined value is ``null``."""
    v = float(v)
    return v if math.isfinite(v) else None


def to_json(report: Report) -> dict[str, Any]:
    """Everything in the report as plain JSON data (NaN as ``null``)."""
    ranks = report.ranks()
    return {
        "model": report.model,
        "n": report.n,
        "seed": report.seed,
        "methods": list(report.methods),
        "metrics": [dataclasses.asdict(METRICS[k]) for k in report.metrics],
        "skipped": report.skipped,
        "values": {
            m: {k: _finite_or_none(report.values[i, j]) for j, k in enumerate(report.metrics)}
            for i, m in enumerate(report.methods)
        },
        "ranks": {
            m: {k: _finite_or_none(ranks[i, j]) for j, k in enumerate(report.metrics)}
            for i, m in enumerate(report.methods)
        },
        "seconds": report.seconds,
        "cost": report.cost,
        "deletion": {
            m: {
                "fractions": [float(f) for f in np.asarray(c.fractions)],
                "mean_scores": [float(s) for s in np.asarray(c.scores).mean(axis=0)],
                "target": c.target_name,
            }
            for m, c in report.deletion.items()
        },
        "per_sample": {
            m: {k: [_finite_or_none(v) for v in report.per_sample[(m, k)]] for k in report.metrics}
            for m in report.methods
        },
    }


def report_card(report: Report) -> Image.Image:
    """Methods × metrics (then seconds and cost), each cell coloured by its rank in its column, values printed.

    Green is the best of a column, red the worst (seconds and cost: fewer is better); grey is
    undefined. Drawn with matplotlib's object-oriented API: no pyplot state, no backend switch.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    columns = [METRICS[k].column for k in report.metrics] + ["seconds (↓)", "cost × fwd (↓)"]
    extra = np.array([[report.seconds[m], report.cost[m]] for m in report.methods], np.float64).reshape(-1, 2)
    values = np.concatenate([report.values, extra], axis=1)
    ranks = rank_columns(values, [METRICS[k].higher_is_better for k in report.metrics] + [False, False])
    m, k = values.shape
    shade = (ranks - 1) / np.maximum(np.sum(~np.isnan(ranks), axis=0) - 1, 1)  # 0 best .. 1 worst defined value
    rgba = 0.55 + 0.45 * colormaps["RdYlGn_r"](np.nan_to_num(shade, nan=0.5))  # pale: the printed values stay legible
    rgba[np.isnan(ranks)] = (0.88, 0.88, 0.88, 1.0)
    fig = Figure(figsize=(0.9 * k + 2.4, 0.4 * m + 2.2), dpi=100)
    ax = fig.subplots()
    ax.imshow(rgba, aspect="auto", interpolation="nearest")
    for i in range(m):
        for j in range(k):
            text = "—" if np.isnan(values[i, j]) else f"{values[i, j]:.3g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(m), report.methods, fontsize=8)
    ax.tick_params(length=0)
    seed = f", seed {report.seed}" if report.seed >= 0 else ""
    ax.set_title(f"{report.model}: {report.n} inputs{seed}; colour = rank per column (green best)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def write(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """``evaluate.csv`` (the table), ``evaluate.json`` (:func:`to_json`) and ``evaluate.png`` (:func:`report_card`)
    in ``out_dir`` (created when missing), each written atomically."""
    out = Path(out_dir)
    png = io.BytesIO()
    report_card(report).save(png, format="PNG")
    return {
        "csv": atomic_write_text(out / "evaluate.csv", report.to_frame().to_csv()),
        "json": atomic_write_text(out / "evaluate.json", json.dumps(to_json(report), indent=1) + "\n"),
        "png": atomic_write_bytes(out / "evaluate.png", png.getvalue()),
    }
