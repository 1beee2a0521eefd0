"""Adversarial examples and robustness: attacks, ε sweeps, honest evaluation, explanations under attack."""

from explain.adversarial.attacks import (
    Adversarial,
    AttackConfig,
    fgsm_core,
    objective,
    perturb,
    perturbation_norm,
    pgd_core,
    project,
)
from explain.adversarial.search import MinEpsResult, min_eps
from explain.adversarial.sweep import AttackResult, SweepResult, bim, fgsm, pgd, sweep

__all__ = [
    "Adversarial",
    "AttackConfig",
    "AttackResult",
    "MinEpsResult",
    "SweepResult",
    "bim",
    "fgsm",
    "fgsm_core",
    "min_eps",
    "objective",
    "perturb",
    "perturbation_norm",
    "pgd",
    "pgd_core",
    "project",
    "sweep",
]
