"""Fraud detection: a random forest over card transactions.

Training needs the features ``amount``, ``hour`` (0-23), ``merchant_category`` (an integer
code), ``distance_km`` (from the cardholder's home), ``online`` (0/1) and the label ``fraud``
(booleans, 0/1, or text where true/yes/1/fraud mean fraud). Classes are weighted by their
frequency, so a rare fraud class still counts. Training leaves out rows with a missing feature;
prediction fills one with the training median. ``probability`` is the probability of fraud;
``fraud`` is true from 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from lakehub.ailib._common import (
    SEED,
    Model,
    classified,
    complete,
    fill,
    flags,
    need_rows,
    numbers,
    split,
)

NAME = "fraud-detection"
FEATURES = ("amount", "hour", "merchant_category", "distance_km", "online")


class FraudModel(Model):
    """The forest over ``FEATURES``."""

    template = NAME
    inputs = FEATURES

    def __init__(self, forest: RandomForestClassifier, medians: np.ndarray) -> None:
        self.forest = forest
        self.medians = medians

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        x = fill(numbers(frame, FEATURES, NAME), self.medians)
        p: np.ndarray = self.forest.predict_proba(x)[:, 1]
        return p

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        p = self.probability(frame)
        return pd.DataFrame({"fraud": p >= 0.5, "probability": p})


def train(data: pd.DataFrame) -> FraudModel:
    x = numbers(data, FEATURES, NAME)
    keep = complete(x)
    need_rows(int(keep.sum()), 10, NAME)
    labels = flags(data["fraud"][keep], NAME, "fraud", positive="fraud")
    forest = RandomForestClassifier(
        n_estimators=50,
        max_depth=12,
        min_samples_leaf=2,
        class_weight="balanced_subsample",
        random_state=SEED,
    )
    forest.fit(x[keep], labels)
    return FraudModel(forest, np.median(x[keep], axis=0))


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """Accuracy, ROC AUC and average precision on a held-out quarter (stratified by label)."""
    labels = flags(data["fraud"], NAME, "fraud", positive="fraud")
    fit, held_out = split(data, pd.Series(labels))
    if held_out.empty:
        return {}
    truth = flags(held_out["fraud"], NAME, "fraud", positive="fraud", both=False)
    return classified(truth, train(fit).probability(held_out))


def sample(n: int) -> pd.DataFrame:
    """Card transactions, 3% fraudulent: fraud tends to be larger, at night, far from home,
    online, and at electronics (5) and jewellery (7) merchants, each only more often than
    ordinary transactions are, so the two overlap."""
    rng = np.random.default_rng(SEED)
    fraud = rng.random(n) < 0.03
    amount = rng.lognormal(np.where(fraud, np.log(180), np.log(40)), 1.0)
    night = rng.random(n) < np.where(fraud, 0.5, 0.08)
    hour = np.where(night, rng.choice([0, 1, 2, 3, 4, 5, 23], n), rng.normal(14, 3.5, n))
    usual = rng.integers(0, 10, n)
    category = np.where(fraud & (rng.random(n) < 0.5), rng.choice([5, 7], n), usual)
    distance = rng.lognormal(np.where(fraud, np.log(60), np.log(6)), 1.3)
    online = rng.random(n) < np.where(fraud, 0.7, 0.3)
    return pd.DataFrame(
        {
            "amount": amount.round(2),
            "hour": np.clip(hour, 0, 23).astype(int),
            "merchant_category": category.astype(int),
            "distance_km": distance.round(1),
            "online": online.astype(int),
            "fraud": fraud.astype(int),
        }
    )


def example() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [23.5, 1890.0],
            "hour": [14, 3],
            "merchant_category": [2, 5],
            "distance_km": [3.2, 850.0],
            "online": [0, 1],
        }
    )
