"""Correlation: the Pearson correlation matrix of a table's numeric columns.

Training takes every numeric (or boolean) column of the data, at least two, whatever their
names: the template's ``columns`` is empty. Pairs are correlated over the rows where both are
present; a constant column correlates with nothing. For a ``feature`` (a column name),
``most_correlated`` is the other column with the largest absolute coefficient and
``coefficient`` that coefficient, sign kept; a name it did not learn, or a column that
correlates with nothing, answers ``""`` and NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lakehub.ailib import UnusableData
from lakehub.ailib._common import SEED, Model, split, texts

NAME = "correlation"


class CorrelationModel(Model):
    """The matrix over ``names`` and, per name, its most correlated partner."""

    template = NAME
    inputs = ("feature",)

    def __init__(self, names: list[str], matrix: np.ndarray) -> None:
        self.names = names
        self.matrix = matrix
        self.partners: dict[str, tuple[str, float]] = {}
        for i, name in enumerate(names):
            row = np.abs(np.where(np.arange(len(names)) == i, np.nan, matrix[i]))
            if not np.isnan(row).all():
                j = int(np.nanargmax(row))
                self.partners[name] = (names[j], float(matrix[i, j]))

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        found = [self.partners.get(f, ("", math.nan)) for f in texts(frame["feature"])]
        return pd.DataFrame(
            {"most_correlated": [f[0] for f in found], "coefficient": [f[1] for f in found]}
        )


def train(data: pd.DataFrame) -> CorrelationModel:
    numeric = data.select_dtypes(include=["number", "bool"]).astype(float)
    if numeric.shape[1] < 2:
        raise UnusableData(
            f"{NAME} needs at least two numeric columns, the data has "
            f"{', '.join(map(str, numeric.columns)) or 'none'}"
        )
    if len(numeric) < 3:
        raise UnusableData(f"{NAME} needs at least 3 rows to train, got {len(numeric)}")
    matrix = numeric.corr().to_numpy(dtype=float)
    return CorrelationModel([str(c) for c in numeric.columns], matrix)


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """Agreement: the share of columns whose most correlated partner in the training part is
    the same in the held-out part (how stable the answers are)."""
    fit, held_out = split(data)
    a, b = train(fit).partners, train(held_out).partners
    same = sum(1 for name, (partner, _) in a.items() if b.get(name, ("",))[0] == partner)
    return {"columns": len(train(data).names), "held_out_agreement": same / max(1, len(a))}


def sample(n: int) -> pd.DataFrame:
    """Daily figures of a seaside shop: sales rise with temperature, umbrellas with rain, hot
    drinks fall with temperature, and visitors follow both."""
    rng = np.random.default_rng(SEED)
    temperature = rng.normal(20, 6, n)
    rainfall = rng.gamma(1.5, 3, n)
    return pd.DataFrame(
        {
            "temperature": temperature.round(1),
            "rainfall": rainfall.round(1),
            "ice_cream_sales": (30 + 6 * temperature + rng.normal(0, 12, n)).round(),
            "umbrella_sales": (5 + 2.5 * rainfall + rng.normal(0, 4, n)).round(),
            "hot_drink_sales": (200 - 5 * temperature + rng.normal(0, 15, n)).round(),
            "visitors": (300 + 8 * temperature - 10 * rainfall + rng.normal(0, 40, n)).round(),
        }
    )


def example() -> pd.DataFrame:
    return pd.DataFrame({"feature": ["temperature", "rainfall"]})
