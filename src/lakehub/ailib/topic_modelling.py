"""Topic modelling: non-negative matrix factorisation (NMF) of the documents' TF-IDF matrix.

Training reads ``text``: words of two letters or more, lower-cased, English stop words left
out, words in more than 90% of the documents or in fewer than two left out, and up to
``VOCABULARY`` words kept. It learns ``TOPICS`` topics (fewer for a handful of documents), each
a weighting of the words, with a deterministic start (NNDSVD). A document's ``topic`` is the
topic (0, 1, ...) weighing most in it and ``top_words`` that topic's ``WORDS`` heaviest words,
comma-separated; a document with no known word is topic 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import NMF
from sklearn.feature_extraction.text import TfidfVectorizer

from lakehub.ailib import UnusableData
from lakehub.ailib._common import SEED, Model, need_rows, split, texts

NAME = "topic-modelling"
TOPICS = 5
WORDS = 6
VOCABULARY = 5000


class TopicModel(Model):
    """The vectoriser, the topic-word weights (``components``) and each topic's top words."""

    template = NAME
    inputs = ("text",)

    def __init__(self, vectorizer: TfidfVectorizer, nmf: NMF) -> None:
        self.vectorizer = vectorizer
        self.nmf = nmf
        words = vectorizer.get_feature_names_out()
        self.top_words = [
            ", ".join(words[j] for j in np.argsort(-row)[:WORDS]) for row in nmf.components_
        ]

    def weights(self, items: list[str]) -> np.ndarray:
        w: np.ndarray = self.nmf.transform(self.vectorizer.transform(items))
        return w

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        topic = self.weights(texts(frame["text"])).argmax(axis=1)
        return pd.DataFrame({"topic": topic, "top_words": [self.top_words[t] for t in topic]})


def train(data: pd.DataFrame) -> TopicModel:
    items = [t for t in texts(data["text"]) if t.strip()]
    need_rows(len(items), 4, NAME)
    vectorizer = TfidfVectorizer(
        stop_words="english", max_df=0.9, min_df=2, max_features=VOCABULARY, sublinear_tf=True
    )
    try:
        x = vectorizer.fit_transform(items)
    except ValueError:  # no word left: every one too rare or too common
        raise UnusableData(f"{NAME}: the texts share too few words to find topics") from None
    k = max(1, min(TOPICS, x.shape[0] - 1, x.shape[1]))
    nmf = NMF(n_components=k, init="nndsvd", max_iter=500, random_state=SEED).fit(x)
    return TopicModel(vectorizer, nmf)


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """How clearly held-out documents sit in one topic: the mean share of a document's topic
    weight in its main topic (1 is one topic only, 1/topics is no preference)."""
    fit, held_out = split(data)
    model = train(fit)
    w = model.weights(texts(held_out["text"]))
    total = w.sum(axis=1)
    shares = w.max(axis=1)[total > 0] / total[total > 0]
    return {
        "topics": len(model.top_words),
        "held_out_topic_share": float(shares.mean()) if len(shares) else 0.0,
    }


SUBJECTS = (
    "football match goal team league player coach season score striker stadium referee",
    "recipe oven flour butter sugar bake dough sauce garlic onion simmer kitchen",
    "market stock shares investor bank interest inflation bond dividend portfolio profit",
    "rocket orbit planet telescope galaxy astronaut launch moon satellite mars gravity",
    "software code compiler database server bug release python function memory cache",
)
COMMON = ("today", "people", "said", "new", "week", "year", "good", "time", "like", "just", "way")


def sample(n: int) -> pd.DataFrame:
    """Short documents, each on one of five subjects (football, baking, markets, space,
    software): 20 to 40 words, 80% from its subject's words, the rest everyday words and
    another subject's."""
    rng = np.random.default_rng(SEED)
    vocab = [s.split() for s in SUBJECTS]
    rows = []
    for i in range(n):
        main = i % len(SUBJECTS)
        other = vocab[(main + 1 + int(rng.integers(0, len(SUBJECTS) - 1))) % len(SUBJECTS)]
        words = []
        for _ in range(int(rng.integers(20, 41))):
            pick = rng.random()
            source = vocab[main] if pick < 0.8 else COMMON if pick < 0.93 else other
            words.append(source[int(rng.integers(0, len(source)))])
        rows.append(" ".join(words))
    return pd.DataFrame({"text": rows})


def example() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [
                "The striker scored a late goal and the team won the league match",
                "Preheat the oven, mix flour, butter and sugar, then bake the dough",
            ]
        }
    )
