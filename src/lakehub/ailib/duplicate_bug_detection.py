"""Duplicate bug detection: TF-IDF over known bug report titles, and the nearest one to a new
title.

Titles are lower-cased and vectorised on words and word pairs (sublinear term frequency, unit
length), so the cosine similarity of two titles is the dot product of their vectors. For a
``title``, ``duplicate_of`` is the ``bug_id`` of the most similar known report and
``similarity`` their cosine similarity (0 to 1): callers pick the threshold (0.5 is a fair
start). A title sharing no word with any known report answers the first report with 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from lakehub.ailib._common import SEED, Model, need_rows, split, texts

NAME = "duplicate-bug-detection"


class DuplicateModel(Model):
    """The vectoriser, the known titles' vectors and their ids."""

    template = NAME
    inputs = ("title",)

    def __init__(self, vectorizer: TfidfVectorizer, vectors: Any, ids: np.ndarray) -> None:
        self.vectorizer = vectorizer
        self.vectors = vectors  # scipy CSR, one row per known report
        self.ids = ids

    def nearest(self, titles: list[str]) -> tuple[np.ndarray, np.ndarray]:
        similarity = (self.vectorizer.transform(titles) @ self.vectors.T).toarray()
        best = similarity.argmax(axis=1)
        return best, similarity[np.arange(len(titles)), best]

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        best, similarity = self.nearest(texts(frame["title"]))
        return pd.DataFrame({"duplicate_of": self.ids[best], "similarity": similarity})


def train(data: pd.DataFrame) -> DuplicateModel:
    known = data[data["title"].notna() & data["bug_id"].notna()]
    need_rows(len(known), 2, NAME)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    vectors = vectorizer.fit_transform(texts(known["title"])).tocsr()
    return DuplicateModel(vectorizer, vectors, known["bug_id"].to_numpy())


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """How close held-out reports come to a known one: the mean similarity of each to its
    nearest report in the training part."""
    fit, held_out = split(data)
    _, similarity = train(fit).nearest(texts(held_out["title"]))
    return {"held_out_similarity": float(similarity.mean())}


PLANTED = (  # the first reports of every sample; example() files duplicates of two of them
    (1001, "Crash when uploading a large CSV file to the lake"),
    (1002, "Notebook server fails to start after changing the environment"),
    (1003, "Login page shows a blank screen in Firefox"),
)
COMPONENTS = (
    "notebook server",
    "login page",
    "dataset catalog",
    "model registry",
    "file browser",
    "dask cluster",
    "portal",
    "API",
    "stream ingest",
    "quota page",
)
SYMPTOMS = (
    "hangs",
    "returns an error 500",
    "is very slow",
    "shows the wrong owner",
    "times out",
    "loses unsaved changes",
    "displays garbled text",
    "ignores the selected size",
)
WHEN = (
    "after an upgrade",
    "when the name has spaces",
    "for users in a space",
    "on the second try",
    "with an expired token",
    "when the list is empty",
    "in dark mode",
    "behind a proxy",
)


def sample(n: int) -> pd.DataFrame:
    """Bug reports: the planted ones, then generated titles (component, symptom, when); one in
    ten repeats an earlier report in other words, as duplicates do."""
    rng = np.random.default_rng(SEED)
    titles = [title for _, title in PLANTED]
    while len(titles) < n:
        if len(titles) > 10 and rng.random() < 0.1:
            words = titles[int(rng.integers(0, len(titles)))].split()
            keep = rng.random(len(words)) > 0.2
            titles.append(" ".join(w for w, k in zip(words, keep, strict=True) if k) or words[0])
            continue
        c, s, w = (rng.integers(0, len(x)) for x in (COMPONENTS, SYMPTOMS, WHEN))
        titles.append(f"The {COMPONENTS[c]} {SYMPTOMS[s]} {WHEN[w]}")
    return pd.DataFrame({"bug_id": np.arange(1001, 1001 + len(titles)), "title": titles})


def example() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "title": [
                "Uploading a large CSV file crashes",
                "Blank screen on the login page with Firefox",
            ]
        }
    )
