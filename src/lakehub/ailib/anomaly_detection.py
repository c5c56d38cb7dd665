"""Anomaly detection: an isolation forest over numeric metrics (``cpu``, ``memory``, ``latency``).

``score`` is the isolation forest's anomaly score (between 0 and 1: about 0.5 and below is
ordinary, near 1 is a row isolated in few splits); ``anomaly`` is true when the score passes the
threshold that flags the most unusual 2% of the training rows. Training leaves out rows with a
missing metric; prediction fills one with the training median.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from lakehub.ailib._common import SEED, Model, complete, fill, need_rows, numbers, split

NAME = "anomaly-detection"
FEATURES = ("cpu", "memory", "latency")
CONTAMINATION = 0.02  # the share of training rows taken as anomalies


class AnomalyModel(Model):
    """Isolation forest scores over ``FEATURES``."""

    template = NAME
    inputs = FEATURES

    def __init__(self, forest: IsolationForest, medians: np.ndarray) -> None:
        self.forest = forest
        self.medians = medians
        self.threshold = float(-forest.offset_)

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = fill(numbers(frame, FEATURES, NAME), self.medians)
        score = -self.forest.score_samples(x)
        return pd.DataFrame({"anomaly": score > self.threshold, "score": score})


def sample(n: int) -> pd.DataFrame:
    """Server metrics: CPU %, memory % and latency in ms, busier servers slower, with 2% of
    rows anomalous (saturated CPU or memory, latency spikes, or all three)."""
    rng = np.random.default_rng(SEED)
    cpu = np.clip(rng.normal(40, 10, n), 1, 100)
    memory = np.clip(rng.normal(55, 8, n) + 0.2 * (cpu - 40), 5, 100)
    latency = rng.lognormal(np.log(80), 0.2, n) * (1 + (cpu - 40) / 200)
    odd = rng.random(n) < CONTAMINATION
    kind = rng.integers(0, 3, n)
    cpu = np.where(odd & (kind != 1), rng.uniform(92, 100, n), cpu)
    memory = np.where(odd & (kind != 0), rng.uniform(90, 99, n), memory)
    latency = np.where(odd & (kind != 2), rng.uniform(600, 3000, n), latency)
    return pd.DataFrame(
        {"cpu": cpu.round(1), "memory": memory.round(1), "latency": latency.round(1)}
    )


def train(data: pd.DataFrame) -> AnomalyModel:
    x = numbers(data, FEATURES, NAME)
    x = x[complete(x)]
    need_rows(len(x), 10, NAME)
    forest = IsolationForest(n_estimators=50, contamination=CONTAMINATION, random_state=SEED)
    forest.fit(x)
    return AnomalyModel(forest, np.median(x, axis=0))


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """The share of held-out rows flagged (near 2% when the held-out part is like the rest)."""
    fit, held_out = split(data)
    flagged = train(fit).answer(held_out)["anomaly"]
    return {"held_out_anomaly_rate": float(flagged.mean())}


def example() -> pd.DataFrame:
    return pd.DataFrame({"cpu": [38.5, 99.0], "memory": [54.0, 97.5], "latency": [82.0, 2500.0]})
