"""Flake analysis: a logistic regression over TF-IDF of test-failure log lines, flaky or real.

Training needs ``log`` (the failure's log line) and ``flaky`` (the label: booleans, 0/1, or
text where true/yes/1/flaky mean flaky). Log lines are lower-cased and split into words of
letters (numbers, paths' digits and hex ids vary between runs and are dropped), vectorised on
words and word pairs. ``probability`` is the probability the failure is flaky; ``flaky`` is
true from 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from lakehub.ailib._common import SEED, Model, classified, flags, need_rows, split, texts

NAME = "flake-analysis"


class FlakeModel(Model):
    """The vectoriser and the classifier."""

    template = NAME
    inputs = ("log",)

    def __init__(self, vectorizer: TfidfVectorizer, classifier: LogisticRegression) -> None:
        self.vectorizer = vectorizer
        self.classifier = classifier

    def probability(self, logs: list[str]) -> np.ndarray:
        p: np.ndarray = self.classifier.predict_proba(self.vectorizer.transform(logs))[:, 1]
        return p

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        p = self.probability(texts(frame["log"]))
        return pd.DataFrame({"flaky": p >= 0.5, "probability": p})


def train(data: pd.DataFrame) -> FlakeModel:
    known = data[data["log"].notna()]
    need_rows(len(known), 10, NAME)
    labels = flags(known["flaky"], NAME, "flaky", positive="flaky")
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b[^\W\d_]{2,}\b"
    )
    x = vectorizer.fit_transform(texts(known["log"]))
    classifier = LogisticRegression(C=4.0, max_iter=1000, random_state=SEED).fit(x, labels)
    return FlakeModel(vectorizer, classifier)


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """Accuracy, ROC AUC and average precision on a held-out quarter (stratified by label)."""
    labels = flags(data["flaky"], NAME, "flaky", positive="flaky")
    fit, held_out = split(data, pd.Series(labels))
    if held_out.empty:
        return {}
    truth = flags(held_out["flaky"], NAME, "flaky", positive="flaky", both=False)
    p = train(fit).probability(texts(held_out["log"]))
    return classified(truth, p)


FLAKY = (
    "TimeoutError: timed out after {n}s waiting for the server to start",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "OSError: [Errno 98] Address already in use: port {n}",
    "httpx.ReadTimeout: read timed out while waiting for response",
    "ConnectionRefusedError: [Errno 111] Connection refused on localhost:{n}",
    "grpc deadline exceeded after {n}ms",
    "503 Service Unavailable: upstream temporarily unavailable",
    "AssertionError: condition not met within {n} seconds (polling)",
    "ResourceWarning: unclosed socket, test interrupted by a signal",
    "element not found: timed out waiting for selector after {n}ms",
)
REAL = (
    "AssertionError: expected {n} rows, got {m}",
    "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
    "KeyError: 'owner' in build_response",
    "AttributeError: 'NoneType' object has no attribute 'name'",
    "ImportError: cannot import name 'Client' from partially initialized module",
    "ValueError: invalid literal for int() with base 10: 'abc'",
    "AssertionError: assert 'admin' == 'alice'",
    "NameError: name 'quota' is not defined",
    "IndexError: list index out of range in parse_rows",
    "sqlalchemy IntegrityError: UNIQUE constraint failed: users.name",
)


def sample(n: int) -> pd.DataFrame:
    """Failure log lines from a test suite: a third flaky (timeouts, lost connections, busy
    ports), the rest real (assertions on values, type and name errors); each line prefixed
    with a test name and carrying run-specific numbers, and 3% of labels wrong."""
    rng = np.random.default_rng(SEED)
    logs, labels = [], []
    for i in range(n):
        flaky = rng.random() < 1 / 3
        pattern = FLAKY[rng.integers(0, len(FLAKY))] if flaky else REAL[rng.integers(0, len(REAL))]
        line = pattern.format(n=int(rng.integers(1, 9000)), m=int(rng.integers(0, 50)))
        logs.append(
            f"FAILED tests/test_{['api', 'lake', 'ui', 'jobs'][i % 4]}.py::case_{i} - {line}"
        )
        labels.append(flaky != (rng.random() < 0.03))
    return pd.DataFrame({"log": logs, "flaky": labels})


def example() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "log": [
                "FAILED tests/test_api.py::test_upload - TimeoutError: timed out after 30s",
                "FAILED tests/test_api.py::test_count - AssertionError: expected 3 rows, got 2",
            ]
        }
    )
