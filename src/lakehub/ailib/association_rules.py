"""Association rules: apriori over baskets, and recommendations that complete a basket.

A basket is a comma-separated string of items (``items``; spaces around an item are dropped,
duplicates count once). Itemsets of up to ``LONGEST`` items in at least ``SUPPORT`` of the
baskets (and at least two) are frequent; every rule ``A -> b`` drawn from one whose confidence
(baskets with A and b / baskets with A) reaches ``CONFIDENCE`` is kept. For a basket, the rules
whose antecedent it holds propose items it lacks; ``recommendations`` are the best ``TOP`` by
confidence (comma-separated, best first) and ``confidence`` the best one's (0 when none apply).
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from lakehub.ailib._common import SEED, Model, need_rows, split, texts

NAME = "association-rules"
SUPPORT = 0.01
CONFIDENCE = 0.3
LONGEST = 3  # items in an itemset: rules have antecedents of one or two items
TOP = 3

Rules = dict[
    tuple[str, ...], list[tuple[str, float]]
]  # antecedent -> (item, confidence), best first


def basket(text: str) -> tuple[str, ...]:
    """The distinct items of a comma-separated basket, sorted."""
    return tuple(sorted({item.strip() for item in text.split(",") if item.strip()}))


class RulesModel(Model):
    """Rules indexed by antecedent, so a basket looks up its own subsets only."""

    template = NAME
    inputs = ("items",)

    def __init__(self, rules: Rules, baskets: int) -> None:
        self.rules = rules
        self.baskets = baskets

    def recommend(self, items: tuple[str, ...]) -> list[tuple[str, float]]:
        best: dict[str, float] = {}
        held = set(items)
        for size in range(1, LONGEST):
            for antecedent in combinations(items, size):
                for item, confidence in self.rules.get(antecedent, ()):
                    if item not in held and confidence > best.get(item, 0.0):
                        best[item] = confidence
        return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        found = [self.recommend(basket(text)) for text in texts(frame["items"])]
        return pd.DataFrame(
            {
                "recommendations": [",".join(item for item, _ in r) for r in found],
                "confidence": [r[0][1] if r else 0.0 for r in found],
            }
        )


def apriori(baskets: list[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    """Frequent itemsets (sorted tuples) of up to ``LONGEST`` items and their basket counts."""
    least = max(2, int(SUPPORT * len(baskets) + 0.999))
    counts = Counter(item for b in baskets for item in b)
    frequent: dict[tuple[str, ...], int] = {(i,): c for i, c in counts.items() if c >= least}
    level = set(frequent)
    for size in range(2, LONGEST + 1):
        singles = {item for itemset in level for item in itemset}
        counted: Counter[tuple[str, ...]] = Counter()
        for b in baskets:
            kept = [item for item in b if item in singles]
            for candidate in combinations(kept, size):
                if all(sub in level for sub in combinations(candidate, size - 1)):
                    counted[candidate] += 1
        level = {itemset for itemset, c in counted.items() if c >= least}
        frequent.update((itemset, counted[itemset]) for itemset in level)
        if not level:
            break
    return frequent


def train(data: pd.DataFrame) -> RulesModel:
    baskets = [b for b in (basket(text) for text in texts(data["items"])) if b]
    need_rows(len(baskets), 10, NAME)
    frequent = apriori(baskets)
    rules: Rules = {}
    for itemset, count in frequent.items():
        for item in itemset if len(itemset) > 1 else ():
            antecedent = tuple(i for i in itemset if i != item)
            confidence = count / frequent[antecedent]
            if confidence >= CONFIDENCE:
                rules.setdefault(antecedent, []).append((item, round(confidence, 4)))
    for proposals in rules.values():
        proposals.sort(key=lambda kv: (-kv[1], kv[0]))
    return RulesModel(rules, len(baskets))


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """Hit rate: how often, for a held-out basket of two or more items with one item hidden,
    the hidden item is among the recommendations for the rest."""
    fit, held_out = split(data)
    model = train(fit)
    tried = hits = 0
    for i, items in enumerate(basket(text) for text in texts(held_out["items"])):
        if len(items) < 2:
            continue
        hidden = items[i % len(items)]
        proposed = {item for item, _ in model.recommend(tuple(x for x in items if x != hidden))}
        tried += 1
        hits += hidden in proposed
    return {"rules": sum(len(r) for r in model.rules.values()), "hit_rate": hits / max(1, tried)}


THEMES = (
    ("bread", "butter", "jam"),
    ("pasta", "tomato sauce", "parmesan"),
    ("beer", "chips", "salsa"),
    ("coffee", "milk", "sugar"),
    ("lettuce", "tomatoes", "olive oil"),
)
OTHERS = ("apples", "bananas", "rice", "chicken", "yogurt", "cheese", "water", "soap", "eggs")


def sample(n: int) -> pd.DataFrame:
    """Grocery baskets: one or two themes (each of a theme's items with 80% chance) and up to
    two other items, so the themes' items are bought together."""
    rng = np.random.default_rng(SEED)
    rows = []
    for _ in range(n):
        items: set[str] = set()
        for theme in rng.choice(len(THEMES), size=rng.integers(1, 3), replace=False):
            items.update(item for item in THEMES[theme] if rng.random() < 0.8)
        items.update(rng.choice(OTHERS, size=rng.integers(0, 3), replace=False).tolist())
        rows.append(",".join(sorted(items)))
    return pd.DataFrame({"items": rows})


def example() -> pd.DataFrame:
    return pd.DataFrame({"items": ["bread", "pasta,tomato sauce"]})
