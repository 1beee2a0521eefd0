"""The names and defaults that ``--help`` shows, as plain data: importing this module imports nothing.

``python -m explain COMMAND --help`` must answer without importing JAX, but the library keeps these
names beside the code that implements them (in modules that import JAX, inside packages whose
``__init__`` imports JAX). They are copied here, and ``tests/explain/cli/test_help.py`` asserts every
one equal to the library's, so a method added to the library and not here fails the tests instead of
being silently refused by the command line.
"""

from __future__ import annotations

# explain.saliency.registry.METHODS, in its order (a method's PRNG key is folded with its index there).
SALIENCY_METHODS: tuple[str, ...] = (
    "vanilla_gradient",
    "gradient_x_input",
    "smoothgrad",
    "smoothgrad_sq",
    "vargrad",
    "integrated_gradients",
    "integrated_gradients_adaptive",
    "expected_gradients",
    "gradient_shap",
    "blur_integrated_gradients",
    "guided_integrated_gradients",
    "guided_backprop",
    "deconvnet",
    "grad_cam",
    "guided_grad_cam",
    "occlusion",
)
# explain.sensitivity.local.METHODS and BASELINES.
SENSITIVITY_METHODS: tuple[str, ...] = ("vanilla_gradient", "gradient_x_input", "integrated_gradients")
SENSITIVITY_BASELINES: tuple[str, ...] = ("mean", "zero")
# explain.adversarial.suite.SUITES and explain.adversarial.evaluation.LABEL_CHOICES.
SUITES: tuple[str, ...] = ("rapid", "standard")
LABEL_CHOICES: tuple[str, ...] = ("predictions", "labels")
# The keys of explain.primer.depth.ACTIVATIONS and INITS.
DEPTH_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu")
DEPTH_INITS: tuple[str, ...] = ("normal", "glorot", "he", "lecun")
# The keys of explain.metrics.report.METRICS, in order, and its DEFAULT_METRICS.
METRICS: tuple[str, ...] = (
    "deletion_auc",
    "deletion_ratio_random",
    "deletion_auc_blur",
    "deletion_blur_ratio_random",
    "insertion_auc",
    "road_morf",
    "faithfulness_correlation",
    "infidelity",
    "max_sensitivity",
    "local_lipschitz",
    "relevance_mass",
    "relevance_mass_grown",
    "relevance_rank",
    "pointing_game",
    "top_k_intersection",
    "mask_auc",
    "sparseness",
    "entropy",
    "randomisation_spearman",
    "randomisation_ssim",
)
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
# explain.chunking.MEMORY_BUDGET (bytes).
MEMORY_BUDGET: int = 256 * 2**20
