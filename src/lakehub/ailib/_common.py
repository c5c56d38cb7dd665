"""What every template shares: the model base class (which checks the input's columns), the
held-out split, and labels, numbers and texts read the same way whatever the user's data holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from lakehub.ailib import UnusableData, require

SEED = 0  # every sample, split and estimator is seeded with it
HELD_OUT = 0.25  # the share of rows evaluate() keeps out of training


class Model(PythonModel):
    """A template's fitted model. ``predict`` checks that the input holds ``inputs`` and hands
    it to ``answer``, whose frame (one row per input row) it returns with the input's index."""

    template: str = ""
    inputs: tuple[str, ...] = ()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        require(frame, self.inputs, self.template)
        out = self.answer(frame)
        out.index = frame.index
        return out

    def answer(self, frame: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError


def need_rows(rows: int, least: int, template: str) -> None:
    """``UnusableData`` when there are fewer than ``least`` usable rows to train on."""
    if rows < least:
        raise UnusableData(f"{template} needs at least {least} usable rows to train, got {rows}")


def split(data: pd.DataFrame, labels: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training part, held-out part): a seeded shuffle, stratified on ``labels`` when given."""
    rng = np.random.default_rng(SEED)
    if labels is None:
        order = rng.permutation(len(data))
        cut = len(data) - max(1, int(len(data) * HELD_OUT))
        return data.iloc[order[:cut]], data.iloc[order[cut:]]
    values = labels.to_numpy()
    train: list[int] = []
    test: list[int] = []
    for value in pd.unique(values):
        rows = rng.permutation(np.flatnonzero(values == value))
        cut = len(rows) - int(len(rows) * HELD_OUT)
        train.extend(rows[:cut])
        test.extend(rows[cut:])
    return data.iloc[sorted(train)], data.iloc[sorted(test)]


def numbers(data: pd.DataFrame, columns: tuple[str, ...] | list[str], template: str) -> np.ndarray:
    """``columns`` as a float matrix, missing values as NaN; ``UnusableData`` names a column
    holding something that is not a number."""
    picked = data[list(columns)]
    if all(pd.api.types.is_numeric_dtype(t) for t in picked.dtypes):  # the usual case: fast
        fast: np.ndarray = picked.to_numpy(dtype=float, na_value=np.nan)
        return fast
    out = np.empty((len(data), len(columns)), dtype=float)
    for i, column in enumerate(columns):
        values = pd.to_numeric(data[column], errors="coerce")
        bad = data[column][values.isna() & data[column].notna()]
        if len(bad):
            raise UnusableData(
                f"{template}: column {column} must be numeric, it holds {bad.iloc[0]!r}"
            )
        out[:, i] = values.to_numpy(dtype=float, na_value=np.nan)
    return out


def complete(x: np.ndarray) -> np.ndarray:
    """The rows of ``x`` with no missing value (training leaves the others out)."""
    mask: np.ndarray = ~np.isnan(x).any(axis=1)
    return mask


def fill(x: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """``x`` with its missing values replaced by the training medians (prediction's rule)."""
    if np.isnan(x).any():
        x = np.where(np.isnan(x), medians, x)
    return x


_TRUE = {"1", "true", "yes", "y", "t"}


def flags(
    values: pd.Series, template: str, column: str, positive: str = "", both: bool = True
) -> np.ndarray:
    """A label column as 0/1: booleans, numbers (non-zero is 1), or text (true/yes/1 or
    ``positive`` are 1). ``UnusableData`` unless both classes occur (when ``both``)."""
    out: np.ndarray
    if values.dtype == bool or pd.api.types.is_numeric_dtype(values):
        out = (pd.to_numeric(values).fillna(0).to_numpy() != 0).astype(int)
    else:
        words = values.astype(str).str.strip().str.lower()
        out = words.isin(_TRUE | ({positive} if positive else set())).to_numpy().astype(int)
    if both and len(np.unique(out)) < 2:
        raise UnusableData(f"{template}: column {column} must hold both classes to learn from")
    return out


def classified(truth: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Accuracy (at 0.5) and, when both classes are held out, ROC AUC and average precision."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if not len(truth):
        return {}
    out = {"accuracy": float(((p >= 0.5) == truth).mean())}
    if 0 < truth.sum() < len(truth):
        out["roc_auc"] = float(roc_auc_score(truth, p))
        out["average_precision"] = float(average_precision_score(truth, p))
    return out


def texts(values: pd.Series) -> list[str]:
    """A text column as strings, missing values as empty ones."""
    return [v if isinstance(v, str) else "" if _missing(v) else str(v) for v in values]


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))
