"""Feature-sensitivity rankings for tabular models: local, global, interactions, permutation reference."""

from explain.sensitivity.data import check_tabular, match_columns, read_csv
from explain.sensitivity.global_ import permutation_importance, rank
from explain.sensitivity.interactions import interactions, row_hessians
from explain.sensitivity.local import local_sensitivity
from explain.sensitivity.result import GlobalSensitivity, Interactions, LocalSensitivity, MethodRanking

__all__ = [
    "GlobalSensitivity",
    "Interactions",
    "LocalSensitivity",
    "MethodRanking",
    "check_tabular",
    "interactions",
    "local_sensitivity",
    "match_columns",
    "permutation_importance",
    "rank",
    "read_csv",
    "row_hessians",
]
