"""The shipped model names, as plain data: read by ``--help`` and the spec resolver without importing JAX.

:mod:`models.registry` checks at import that its table has exactly these names, so the two cannot drift.
"""

IMAGE_NAMES = ("shapes_cnn", "shapes_cnn_robust", "digits_cnn")
TABULAR_NAMES = ("breast_cancer_mlp", "friedman1_mlp")
NAMES = IMAGE_NAMES + TABULAR_NAMES
