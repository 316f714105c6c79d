"""Statistics for score files and the scaling study: bootstrap intervals and the log-linear fit.

A benchmark of a few hundred questions gives accuracies a few points apart that may be noise; every score
carries a percentile-bootstrap 95% interval over questions, seeded so the same predictions give the same
interval. The paper's scaling claim is that accuracy grows linearly in log(synthetic tokens); the fit says how
much per doubling and where the line crosses the RAG baseline.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def bootstrap_ci(
    correct: Sequence[bool | float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-question outcomes (resampling questions)."""
    values = np.asarray(correct, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap_ci: no outcomes")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class LogLinearFit:
    """accuracy = a + b * ln(tokens)."""

    a: float
    b: float
    r2: float
    n: int

    def predict(self, tokens: float) -> float:
        return self.a + self.b * math.log(tokens)

    def tokens_for(self, accuracy: float) -> float | None:
        """Where the line reaches an accuracy (e.g. the RAG baseline), or None if it never rises or would need
        more tokens than a float holds (a nearly flat line over a few budgets, as on the smoke configuration)."""
        if self.b <= 0:
            return None
        exponent = (accuracy - self.a) / self.b
        return math.exp(exponent) if exponent < math.log(sys.float_info.max) else None

    @property
    def per_doubling(self) -> float:
        return self.b * math.log(2)


def fit_log_linear(tokens: Sequence[float], accuracy: Sequence[float]) -> LogLinearFit | None:
    """Least-squares fit of accuracy on ln(tokens); None with fewer than two distinct token counts."""
    x = np.log(np.asarray(tokens, dtype=np.float64))
    y = np.asarray(accuracy, dtype=np.float64)
    if len(set(x.tolist())) < 2:
        return None
    b, a = np.polyfit(x, y, 1)
    residual = float(((y - (a + b * x)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return LogLinearFit(float(a), float(b), 1 - residual / total if total else 1.0, len(x))
