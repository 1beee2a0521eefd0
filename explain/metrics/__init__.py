"""Explanation-quality metrics: is a saliency map faithful, stable, well localised, concise?

One family per module, each pure and batched like the methods (:mod:`explain.saliency`):

* :mod:`~explain.metrics.faithfulness`: deletion / insertion curves, ROAD, faithfulness
  correlation, infidelity (run the model; chunked within the one memory budget).
* :mod:`~explain.metrics.stability`: max-sensitivity and the local Lipschitz estimate
  (rerun a saliency method, by its registry name, on perturbed inputs).
* :mod:`~explain.metrics.localisation`: relevance mass and rank, pointing game, top-k
  intersection and ROC AUC against a ground-truth mask (pure array functions).
* :mod:`~explain.metrics.complexity`: Gini sparseness and entropy (pure array functions).
* :mod:`~explain.metrics.randomisation`: the model-parameter randomisation sanity check
  (rerun a method with the layers re-drawn, top first; Spearman and SSIM per layer) and
  data randomisation (retrain on permuted labels, against a true-label retrain).
* :mod:`~explain.metrics.report`: every metric of every method on one batch, as a table,
  CSV, JSON and a PNG report card (``python -m explain evaluate``).

Attributions are arrays shaped like ``x`` (or an :class:`~explain.saliency.Attribution`);
image maps become per-pixel relevance with :func:`pixel_relevance` (``Σ_c |a|`` by default).
Every function returns one value per sample, ``(N,)``, or a :class:`Curve`.
"""

from explain.metrics.complexity import (
    entropy,
    sparseness,
)
from explain.metrics.faithfulness import (
    Curve,
    SubsetDrops,
    deletion,
    faithfulness_correlation,
    infidelity,
    insertion,
    perturbation_drops,
    road,
    subset_drops,
)
from explain.metrics.imputation import (
    linear_imputation,
    noisy_linear_imputation,
)
from explain.metrics.localisation import (
    grow,
    mask_auc,
    pointing_game,
    relevance_mass,
    relevance_rank,
    top_k_intersection,
)
from explain.metrics.randomisation import (
    DataRandomisation,
    Randomisation,
    data_randomisation,
    parameter_randomisation,
)
from explain.metrics.relevance import (
    pixel_relevance,
)
from explain.metrics.report import (
    DEFAULT_METRICS,
    METRICS,
    MetricInfo,
    Report,
    evaluate,
    report_card,
)
from explain.metrics.stability import (
    local_lipschitz,
    max_sensitivity,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Curve",
    "DataRandomisation",
    "MetricInfo",
    "Randomisation",
    "Report",
    "SubsetDrops",
    "data_randomisation",
    "deletion",
    "entropy",
    "evaluate",
    "faithfulness_correlation",
    "grow",
    "infidelity",
    "insertion",
    "linear_imputation",
    "local_lipschitz",
    "mask_auc",
    "max_sensitivity",
    "noisy_linear_imputation",
    "parameter_randomisation",
    "perturbation_drops",
    "pixel_relevance",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "report_card",
    "road",
    "sparseness",
    "subset_drops",
    "top_k_intersection",
]
