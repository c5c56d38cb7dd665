"""Sentiment: VADER's lexicon and rules (the ``vaderSentiment`` package, whose lexicon ships in
its wheel), nothing learnt from words.

``compound`` is VADER's normalised score, from -1 (most negative) to 1 (most positive);
``label`` is positive from ``+band``, negative up to ``-band``, neutral between. Training reads
``text`` and learns only the band. With a ``label`` column as well (positive, negative or
neutral) it picks from ``BANDS`` the band that labels the most rows right (of those that label
as many, the nearest VADER's own 0.05); without one it keeps 0.05. Either way it records how
many rows it saw and how many it labelled each way (``counts``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lakehub.ailib import MissingPackage
from lakehub.ailib._common import SEED, Model, need_rows, split, texts

NAME = "sentiment"
DEFAULT_BAND = 0.05
BANDS = (0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
LABELS = ("negative", "neutral", "positive")


def _analyzer() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise MissingPackage(
            f"{NAME} needs the vaderSentiment package: pip install vaderSentiment==3.3.2"
        ) from None
    return SentimentIntensityAnalyzer()


class SentimentModel(Model):
    """The band, and what training saw; the analyser is built on first use, not pickled."""

    template = NAME
    inputs = ("text",)

    def __init__(self, band: float, counts: dict[str, int]) -> None:
        self.band = band
        self.counts = counts  # rows seen in training, and how many got each label
        self._vader: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_vader"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._vader = None

    def compound(self, items: list[str]) -> np.ndarray:
        if self._vader is None:
            self._vader = _analyzer()
        return np.array([self._vader.polarity_scores(t)["compound"] for t in items], dtype=float)

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        score = self.compound(texts(frame["text"]))
        return pd.DataFrame({"compound": score, "label": label(score, self.band)})


def label(score: np.ndarray, band: float) -> np.ndarray:
    """positive from ``band``, negative up to ``-band``, neutral between."""
    out: np.ndarray = np.select(
        [score >= band, score <= -band], ["positive", "negative"], "neutral"
    )
    return out


def _truth(data: pd.DataFrame) -> np.ndarray | None:
    """The ``label`` column, lower-cased, when there is one with known labels."""
    if "label" not in data.columns:
        return None
    values = data["label"].astype(str).str.strip().str.lower().to_numpy()
    return values if np.isin(values, LABELS).any() else None


def train(data: pd.DataFrame) -> SentimentModel:
    items = texts(data["text"])
    need_rows(len(items), 1, NAME)
    score = SentimentModel(DEFAULT_BAND, {}).compound(items)
    truth = _truth(data)
    band = DEFAULT_BAND
    if truth is not None:
        known = np.isin(truth, LABELS)
        right = [float((label(score[known], b) == truth[known]).mean()) for b in BANDS]
        best = [b for b, r in zip(BANDS, right, strict=True) if r == max(right)]
        band = min(best, key=lambda b: abs(b - DEFAULT_BAND))  # ties: nearest VADER's own
    named = label(score, band)
    counts = {"rows": len(items)} | {name: int((named == name).sum()) for name in LABELS}
    return SentimentModel(band, counts)


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """With a ``label`` column, the accuracy on a held-out quarter; always the shares of
    held-out rows labelled positive and negative."""
    fit, held_out = split(data)
    model = train(fit)
    named = model.answer(held_out)["label"].to_numpy()
    out: dict[str, Any] = {
        "band": model.band,
        "positive_share": float((named == "positive").mean()),
        "negative_share": float((named == "negative").mean()),
    }
    truth = _truth(held_out)
    if truth is not None:
        known = np.isin(truth, LABELS)
        out["accuracy"] = float((named[known] == truth[known]).mean())
    return out


GOOD = (
    "I love {t}.",
    "{T} is great!",
    "{T} is excellent, really happy with it.",
    "Wonderful, I really enjoy {t}.",
    "{T} is fantastic.",
)
BAD = (
    "I hate {t}.",
    "{T} is terrible!",
    "{T} is awful, really disappointed.",
    "Horrible, I regret buying {t}.",
    "{T} is useless.",
)
PLAIN = (
    "I received {t} on Tuesday.",
    "{T} arrived in a box.",
    "I am writing about {t}.",
    "{T} is available in two colours.",
    "Here is the note about {t}.",
)
THINGS = ("this phone", "the service", "the new update", "my order", "the hotel", "this book")


def sample(n: int) -> pd.DataFrame:
    """Short reviews with their ``label``, a third of each: positive and negative ones built on
    opinion words, neutral ones stating facts."""
    rng = np.random.default_rng(SEED)
    patterns = dict(zip(LABELS, (BAD, PLAIN, GOOD), strict=True))
    rows = []
    for i in range(n):
        thing = THINGS[rng.integers(0, len(THINGS))]
        kind = LABELS[i % 3]
        pattern = patterns[kind][rng.integers(0, len(patterns[kind]))]
        rows.append((pattern.format(t=thing, T=thing.capitalize()), kind))
    return pd.DataFrame(rows, columns=["text", "label"])


def example() -> pd.DataFrame:
    return pd.DataFrame({"text": ["I love this, it is great", "terrible, I hate it"]})
