"""Adversarial examples and robustness: attacks, ε sweeps, honest evaluation, explanations under attack."""

from explain.adversarial.attacks import AttackConfig, fgsm_pure, perturbation, perturbation_norm, pgd_pure, project
from explain.adversarial.search import MinEpsResult, min_eps
from explain.adversarial.sweep import AttackResult, SweepResult, bim, fgsm, pgd, sweep

__all__ = [
    "AttackConfig",
    "AttackResult",
    "MinEpsResult",
    "SweepResult",
    "bim",
    "fgsm",
    "fgsm_pure",
    "min_eps",
    "perturbation",
    "perturbation_norm",
    "pgd",
    "pgd_pure",
    "project",
    "sweep",
]
