"""Feature-sensitivity rankings for tabular models: local, global, interactions, permutation reference.

Method names are the function names used everywhere else (``"vanilla_gradient"``,
``"gradient_x_input"``, ``"integrated_gradients"``, ``"permutation_importance"``).
"""

from explain.sensitivity.data import check_tabular, match_columns, read_csv
from explain.sensitivity.global_ import permutation_importance, rank
from explain.sensitivity.interactions import interactions, row_hessians
from explain.sensitivity.local import METHODS, local_sensitivity
from explain.sensitivity.result import GlobalSensitivity, Interactions, LocalSensitivity, MethodRanking, Settings

__all__ = [
    "METHODS",
    "GlobalSensitivity",
    "Interactions",
    "LocalSensitivity",
    "MethodRanking",
    "Settings",
    "check_tabular",
    "interactions",
    "local_sensitivity",
    "match_columns",
    "permutation_importance",
    "rank",
    "read_csv",
    "row_hessians",
]
