"""Regression: a ridge regression of ``target`` on ten features, sampled from scikit-learn's
bundled diabetes data (age, sex, body mass index, blood pressure and six blood serum
measurements, already centred and scaled there; the target is disease progression a year on).

Features are standardised and the ridge penalty is chosen by leave-one-out cross-validation
among ``PENALTIES``. Training leaves out rows with a missing value; prediction fills a missing
feature with the training median. The output is ``prediction``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lakehub.ailib._common import SEED, Model, complete, fill, need_rows, numbers, split

NAME = "regression"
FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
PENALTIES = tuple(10.0**p for p in range(-3, 4))


class RegressionModel(Model):
    """The scaler and the ridge, over ``FEATURES``."""

    template = NAME
    inputs = FEATURES

    def __init__(self, pipeline: Pipeline, medians: np.ndarray) -> None:
        self.pipeline = pipeline
        self.medians = medians

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = fill(numbers(frame, FEATURES, NAME), self.medians)
        return pd.DataFrame({"prediction": self.pipeline.predict(x)})


def train(data: pd.DataFrame) -> RegressionModel:
    x = numbers(data, (*FEATURES, "target"), NAME)
    x = x[complete(x)]
    need_rows(len(x), 12, NAME)
    pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=PENALTIES))
    pipeline.fit(x[:, :-1], x[:, -1])
    return RegressionModel(pipeline, np.median(x[:, :-1], axis=0))


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """R² and mean absolute error on a held-out quarter."""
    fit, held_out = split(data)
    x = numbers(held_out, (*FEATURES, "target"), NAME)
    x = x[complete(x)]
    predicted = train(fit).pipeline.predict(x[:, :-1])
    return {
        "r2": float(r2_score(x[:, -1], predicted)),
        "mae": float(mean_absolute_error(x[:, -1], predicted)),
    }


def _diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    frame: pd.DataFrame = load_diabetes(as_frame=True).frame
    return frame


def sample(n: int) -> pd.DataFrame:
    """``n`` of the diabetes data's 442 rows (all of them from 442), in a seeded order."""
    frame = _diabetes()
    order = np.random.default_rng(SEED).permutation(len(frame))[: max(1, n)]
    return frame.iloc[np.sort(order)].reset_index(drop=True)


def example() -> pd.DataFrame:
    return _diabetes().loc[:1, list(FEATURES)]
