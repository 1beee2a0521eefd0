"""Synthetic data whose right answers are known.

Images: 16x16 RGB noise with one bright 6x6 square; the class is the quadrant it sits in.
Rows: six features in [0, 1]; the class is ``age + 2 * dose`` cut at two thresholds, so only
``age`` and ``dose`` matter (``dose`` twice as much).
"""

from __future__ import annotations

import dataclasses

import numpy as np

CLASSES = ("top-left", "top-right", "bottom-left", "bottom-right")
LEVELS = ("low", "mid", "high")
FEATURES = ("age", "dose", "weight", "height", "noise_a", "noise_b")


@dataclasses.dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True)
class Splits:
    train: Split
    test: Split


def images(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.uniform(0.0, 0.35, (n, 16, 16, 3)).astype(np.float32)
    for i, c in enumerate(y):
        r = (c // 2) * 8 + rng.integers(0, 3)
        s = (c % 2) * 8 + rng.integers(0, 3)
        x[i, r : r + 6, s : s + 6] = rng.uniform(0.75, 1.0, 3)
    return Split(x, y.astype(np.int64))


def rows(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (n, len(FEATURES))).astype(np.float32)
    score = x[:, 0] + 2.0 * x[:, 1]
    return Split(x, np.digitize(score, [1.0, 2.0]).astype(np.int64))


def image_splits() -> Splits:
    return Splits(images(512, 0), images(64, 1))


def row_splits() -> Splits:
    return Splits(rows(1024, 2), rows(128, 3))
