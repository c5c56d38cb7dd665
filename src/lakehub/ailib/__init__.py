"""The AI library: ten prebuilt model templates, trained and registered in one call::

    import lakehub.ailib
    lakehub.ailib.templates()                       # the ten, by name
    lakehub.ailib.log("fraud-detection")            # train on its sample, register it
    lakehub.ailib.log("fraud-detection", df)        # retrain on your own data (its `columns`)
    lakehub.ailib.save("sentiment", "/tmp/model")   # an MLflow pyfunc model in a directory

or ``python -m lakehub.ailib train fraud-detection --data cards.parquet``.

Rules:

- Every template has a deterministic sample (seeded generators, or scikit-learn's bundled toy
  sets): nothing is downloaded, at training or at prediction.
- Every model is an ``mlflow.pyfunc.PythonModel`` defined in ``lakehub.ailib``: its ``predict``
  takes a DataFrame with the example's columns and answers a DataFrame, one row per input row.
- Data to train on must hold the template's ``columns`` (more are ignored); otherwise
  ``MissingColumns`` names the ones missing before anything is trained or logged.
- Importing this package, ``templates()`` and ``get()`` import nothing heavy: a template's
  module (pandas, scikit-learn, MLflow) loads when its sample, training or example is first used.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas
    from mlflow.models import ModelSignature
    from mlflow.pyfunc.model import PythonModel

__all__ = [
    "MissingColumns",
    "MissingPackage",
    "Template",
    "TemplateError",
    "UnknownTemplate",
    "UnusableData",
    "get",
    "log",
    "save",
    "templates",
]

SAMPLE_ROWS = 1000  # rows of a template's sample when no data is given


class TemplateError(Exception):
    """A readable refusal (unknown template, unusable data, a package missing): one line."""


class UnknownTemplate(TemplateError, KeyError):
    """No template by that name; the message lists the names there are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnusableData(TemplateError, ValueError):
    """Training data the template cannot learn from (too few rows, a single class...)."""


class MissingColumns(UnusableData):
    """Training or prediction data lacks some of the columns a template needs."""

    def __init__(self, template: str, missing: list[str], present: list[str]) -> None:
        self.missing = missing
        have = ", ".join(present) if present else "none"
        super().__init__(
            f"{template} needs the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}, missing from the data (its columns: {have})"
        )


class MissingPackage(TemplateError, ImportError):
    """A template's extra package (its ``packages``) is not installed."""


@dataclass(frozen=True)
class Template:
    """A prebuilt model: how to get a sample, train on data with ``columns``, and try it."""

    name: str  # e.g. "fraud-detection"; the registered model is f"ailib-{name}"
    title: str  # "Fraud detection"
    description: str  # one or two sentences for a portal page
    columns: tuple[str, ...]  # the columns training data must have
    packages: tuple[str, ...]  # pip requirements beyond the datascience environment's
    sample: Callable[[int], pandas.DataFrame]  # deterministic training sample, n rows hint
    train: Callable[[pandas.DataFrame], PythonModel]  # fit on data with columns
    example: Callable[[], pandas.DataFrame]  # an input example of 1-3 rows


@dataclass(frozen=True)
class _Deferred:
    """``lakehub.ailib.<module>.<attr>``, imported on the first call."""

    module: str
    attr: str

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(f"lakehub.ailib.{self.module}"), self.attr)(*args)


# name, title, description, columns, packages; the code is in the module named after the name
_TABLE: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "anomaly-detection",
        "Anomaly detection",
        "Flags unusual rows of numeric metrics (CPU, memory, latency) with an isolation forest "
        "and scores how unusual each one is.",
        ("cpu", "memory", "latency"),
        (),
    ),
    (
        "association-rules",
        "Association rules",
        "Learns which items are bought together (apriori over baskets) and recommends the items "
        "that most often complete a basket.",
        ("items",),
        (),
    ),
    (
        "correlation",
        "Correlation",
        "Learns the correlation matrix of a table's numeric columns and answers, for a column, "
        "the one that moves most with it.",
        (),
        (),
    ),
    (
        "duplicate-bug-detection",
        "Duplicate bug detection",
        "Finds the known bug report most similar to a new one (TF-IDF and nearest neighbour) "
        "so duplicates are caught when they are filed.",
        ("bug_id", "title"),
        (),
    ),
    (
        "flake-analysis",
        "Flake analysis",
        "Tells a flaky test failure (timeouts, lost connections, races) from a real one by its "
        "log line, with a probability.",
        ("log", "flaky"),
        (),
    ),
    (
        "fraud-detection",
        "Fraud detection",
        "Scores card transactions for fraud (a random forest over amount, hour, merchant "
        "category, distance and channel).",
        ("amount", "hour", "merchant_category", "distance_km", "online", "fraud"),
        (),
    ),
    (
        "matrix-factorization",
        "Matrix factorization",
        "Predicts the rating a user would give an item from everyone's past ratings (biases and "
        "a truncated SVD of the user-item matrix).",
        ("user_id", "item_id", "rating"),
        (),
    ),
    (
        "regression",
        "Regression",
        "A ridge regression of disease progression on ten clinical measurements (scikit-learn's "
        "diabetes data); retrain it on any table with those columns and a target.",
        ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target"),
        (),
    ),
    (
        "sentiment",
        "Sentiment",
        "Rates a text positive, negative or neutral with VADER's lexicon; labelled data "
        "calibrates where neutral ends.",
        ("text",),
        ("vaderSentiment==3.3.2",),
    ),
    (
        "topic-modelling",
        "Topic modelling",
        "Finds the topics of a collection of documents (NMF over TF-IDF) and tells which topic a "
        "new document is about, with its top words.",
        ("text",),
        (),
    ),
)


def _module(name: str) -> str:
    return name.replace("-", "_")


def templates() -> dict[str, Template]:
    """All ten templates, by name, in a stable order."""
    return {
        name: Template(
            name=name,
            title=title,
            description=description,
            columns=columns,
            packages=packages,
            sample=_Deferred(_module(name), "sample"),
            train=_Deferred(_module(name), "train"),
            example=_Deferred(_module(name), "example"),
        )
        for name, title, description, columns, packages in _TABLE
    }


def get(name: str) -> Template:
    """The template called ``name``; ``UnknownTemplate`` (a ``KeyError``) lists the names."""
    found = templates().get(name)
    if found is None:
        raise UnknownTemplate(
            f"no AI library template {name!r}; there are: {', '.join(templates())}"
        )
    return found


def require(data: pandas.DataFrame, columns: tuple[str, ...], template: str) -> None:
    """``MissingColumns`` unless ``data`` holds every one of ``columns``."""
    present = [str(c) for c in data.columns]
    missing = [c for c in columns if c not in set(present)]
    if missing:
        raise MissingColumns(template, missing, present)


def _prepare(
    name: str, data: pandas.DataFrame | None
) -> tuple[Template, PythonModel, dict[str, Any], ModelSignature, pandas.DataFrame]:
    """Check, train on all of the data, evaluate training on three quarters of it on the
    fourth (skipped when three quarters are too few to train on); the model and what to log."""
    template = get(name)
    frame = template.sample(SAMPLE_ROWS) if data is None else data
    require(frame, template.columns, name)
    model = template.train(frame)
    metrics: dict[str, Any] = {"rows": len(frame)}
    with contextlib.suppress(UnusableData):
        metrics.update(_Deferred(_module(name), "evaluate")(frame))
    example = template.example()

    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(None, example))
    return template, model, metrics, signature, example


# what every model needs to load, each as the distributions that provide it
_SERVING = (
    ("mlflow", "mlflow-skinny"),
    ("cloudpickle",),
    ("numpy",),
    ("pandas",),
    ("scikit-learn",),
)


def _requirements(template: Template) -> list[str]:
    """What a serving environment needs, pinned to this one's versions (not inferred: that
    loads the model again in a subprocess, seconds per model). ``lakehub`` itself, whose
    classes the model refers to, is left to the environment: it is not on a package index."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for choices in _SERVING:
        for dist in choices:
            try:
                pins.append(f"{dist}=={version(dist)}")
                break
            except PackageNotFoundError:
                continue
    return pins + list(template.packages)


def save(name: str, path: str, data: pandas.DataFrame | None = None) -> dict[str, Any]:
    """Train template ``name`` on ``data`` (its sample when None) and save an MLflow pyfunc model
    at ``path`` with a signature and an input example. The metrics worth logging: ``rows`` and
    the template's quality figures on a held-out quarter."""
    template, model, metrics, signature, example = _prepare(name, data)
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(
        path,
        python_model=model,
        signature=signature,
        input_example=example,
        pip_requirements=_requirements(template),
    )
    return metrics


def log(
    name: str,
    data: pandas.DataFrame | None = None,
    register: bool = True,
    read: Callable[[], pandas.DataFrame] | None = None,
) -> str:
    """Train template ``name`` in an MLflow run (tracking URI and experiment from the
    environment), log its params, metrics and model, and register it as ``ailib-<name>`` when
    ``register``. The registered version's URI (``models:/ailib-<name>/<version>``), or the
    logged model's. ``read``, when given, is called inside the run for the data (a catalogued
    dataset read there is logged as the run's input)."""
    if data is not None:  # refused before a run is made
        template = get(name)
        require(data, template.columns, template.name)
    import mlflow
    import mlflow.pyfunc

    registered = f"ailib-{name}" if register else None
    with mlflow.start_run(run_name=f"ailib-{name}"):
        if read is not None:
            data = read()
        template, model, metrics, signature, example = _prepare(name, data)
        mlflow.log_params({"template": name, "rows": metrics["rows"]})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "rows"})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(template),
            registered_model_name=registered,
        )
    if registered and info.registered_model_version is not None:
        return f"models:/{registered}/{info.registered_model_version}"
    return str(info.model_uri)
