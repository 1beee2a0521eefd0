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
from explain.adversarial.sweep import AttackResult, SweepResult, apgd, bim, fgsm, pgd, square, sweep

__all__ = [
    "Adversarial",
    "AttackConfig",
    "AttackResult",
    "MinEpsResult",
    "SweepResult",
    "apgd",
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
    "square",
    "sweep",
]
