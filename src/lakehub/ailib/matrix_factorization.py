"""Matrix factorization: ratings as a global mean, a user bias, an item bias, and user and item
factors fitted to what the biases leave by alternating least squares.

Training needs ``user_id``, ``item_id`` and ``rating`` (numbers; a pair rated twice keeps the
mean). Biases are shrunk towards zero by ``SHRINK`` pseudo-ratings. ``FACTORS`` factors per user
and item start from a truncated SVD of the residual matrix (unrated pairs as 0) and are refitted
``ROUNDS`` times to the rated pairs only, each side in turn, as a ridge regression with penalty
``PENALTY``. The predicted ``rating`` is clipped to the range seen in training; an unknown user
or item contributes no bias and no factor (an unknown pair gets the mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.decomposition import TruncatedSVD

from lakehub.ailib._common import SEED, Model, complete, need_rows, numbers, split

NAME = "matrix-factorization"
FACTORS = 5
SHRINK = 5.0
PENALTY = 3.0
ROUNDS = 15


class FactorModel(Model):
    """Ids, biases and factors: a user's row of ``users_f`` dotted with an item's of
    ``items_f``."""

    template = NAME
    inputs = ("user_id", "item_id")

    def __init__(
        self,
        *,
        users: np.ndarray,
        items: np.ndarray,
        mean: float,
        user_bias: np.ndarray,
        item_bias: np.ndarray,
        users_f: np.ndarray,
        items_f: np.ndarray,
        low: float,
        high: float,
    ) -> None:
        self.users, self.items = users, items  # sorted ids
        self.mean, self.user_bias, self.item_bias = mean, user_bias, item_bias
        self.users_f, self.items_f = users_f, items_f
        self.low, self.high = low, high

    def rating(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        u = _index(self.users, users)
        i = _index(self.items, items)
        ku, ki = u >= 0, i >= 0
        out = np.full(len(users), self.mean)
        out[ku] += self.user_bias[u[ku]]
        out[ki] += self.item_bias[i[ki]]
        both = ku & ki
        out[both] += np.einsum("ij,ij->i", self.users_f[u[both]], self.items_f[i[both]])
        clipped: np.ndarray = np.clip(out, self.low, self.high)
        return clipped

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        ids = numbers(frame, self.inputs, NAME)
        return pd.DataFrame({"rating": self.rating(ids[:, 0], ids[:, 1])})


def _index(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in sorted ``known``, -1 for ids not there."""
    at = np.searchsorted(known, ids).clip(0, max(0, len(known) - 1))
    return np.where((len(known) > 0) & (known[at] == ids), at, -1)


def _solve(rows: np.ndarray, other: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """For each of ``n`` rows, the ridge regression of its ``target`` values on the ``other``
    side's factors of the same ratings: (F'F + penalty I)^-1 F't, all rows at once."""
    k = other.shape[1]
    gram = np.empty((n, k, k))
    moment = np.empty((n, k, 1))
    for a in range(k):
        moment[:, a, 0] = np.bincount(rows, other[:, a] * target, n)
        for b in range(a, k):
            gram[:, a, b] = gram[:, b, a] = np.bincount(rows, other[:, a] * other[:, b], n)
    factors: np.ndarray = np.linalg.solve(gram + PENALTY * np.eye(k), moment)[:, :, 0]
    return factors


def train(data: pd.DataFrame) -> FactorModel:
    x = numbers(data, ("user_id", "item_id", "rating"), NAME)
    x = x[complete(x)]
    need_rows(len(x), 10, NAME)
    pairs = pd.DataFrame(x, columns=["u", "i", "r"]).groupby(["u", "i"], as_index=False)["r"].mean()
    users, u = np.unique(pairs["u"].to_numpy(), return_inverse=True)
    items, i = np.unique(pairs["i"].to_numpy(), return_inverse=True)
    r = pairs["r"].to_numpy()
    mean = float(r.mean())
    item_bias = np.bincount(i, r - mean, len(items)) / (np.bincount(i, None, len(items)) + SHRINK)
    rest = r - mean - item_bias[i]
    user_bias = np.bincount(u, rest, len(users)) / (np.bincount(u, None, len(users)) + SHRINK)
    rest = rest - user_bias[u]
    k = max(1, min(FACTORS, len(users) - 1, len(items) - 1))
    if k < min(len(users), len(items)):
        residual = csr_matrix((rest, (u, i)), shape=(len(users), len(items)))
        items_f = TruncatedSVD(n_components=k, random_state=SEED).fit(residual).components_.T
    else:
        items_f = np.random.default_rng(SEED).normal(0, 0.1, (len(items), k))
    for _ in range(ROUNDS):
        users_f = _solve(u, items_f[i], rest, len(users))
        items_f = _solve(i, users_f[u], rest, len(items))
    return FactorModel(
        users=users,
        items=items,
        mean=mean,
        user_bias=user_bias,
        item_bias=item_bias,
        users_f=users_f,
        items_f=items_f,
        low=float(r.min()),
        high=float(r.max()),
    )


def evaluate(data: pd.DataFrame) -> dict[str, Any]:
    """Root mean squared error on held-out ratings, and that of always answering the mean."""
    fit, held_out = split(data)
    x = numbers(held_out, ("user_id", "item_id", "rating"), NAME)
    x = x[complete(x)]
    model = train(fit)
    error = model.rating(x[:, 0], x[:, 1]) - x[:, 2]
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "rmse_of_mean": float(np.sqrt(np.mean((x[:, 2] - model.mean) ** 2))),
    }


def sample(n: int) -> pd.DataFrame:
    """``n`` ratings from 1 to 5 by up to 100 users (one per 20 ratings) of 50 items, drawn
    from three hidden tastes (user and item factors), item quality, user generosity and noise;
    each pair once."""
    rng = np.random.default_rng(SEED)
    users, items = max(10, min(100, n // 20)), 50
    taste = rng.normal(0, 1, (users, 3)) @ rng.normal(0, 0.6, (3, items))
    scores = 3.2 + rng.normal(0, 0.3, (users, 1)) + rng.normal(0, 0.5, (1, items)) + taste
    chosen = rng.choice(users * items, size=min(n, users * items), replace=False)
    u, i = np.divmod(chosen, items)
    rating = np.clip(np.rint(scores[u, i] + rng.normal(0, 0.4, len(chosen))), 1, 5)
    return pd.DataFrame({"user_id": u + 1, "item_id": i + 1, "rating": rating.astype(int)})


def example() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [1, 2], "item_id": [3, 7]})
