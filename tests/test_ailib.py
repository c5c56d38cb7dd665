"""The AI library's ten templates: each trains on its own sample and saves an MLflow model (with
a signature and an input example) that loads and answers its example sensibly, one row and
many rows alike; retraining refuses data missing a column, by name; ``log`` registers a version
in a tracking store; the command line refuses in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow")
pytest.importorskip("sklearn")

import mlflow.pyfunc  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from lakehub import ailib  # noqa: E402

OUTPUTS = {
    "anomaly-detection": ["anomaly", "score"],
    "association-rules": ["recommendations", "confidence"],
    "correlation": ["most_correlated", "coefficient"],
    "duplicate-bug-detection": ["duplicate_of", "similarity"],
    "flake-analysis": ["flaky", "probability"],
    "fraud-detection": ["fraud", "probability"],
    "matrix-factorization": ["rating"],
    "regression": ["prediction"],
    "sentiment": ["compound", "label"],
    "topic-modelling": ["topic", "top_words"],
}
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every template saved from its sample and loaded back: name -> (metrics, path, model)."""
    root = tmp_path_factory.mktemp("ailib")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        out = {}
        for name in ailib.templates():
            path = root / name
            metrics = ailib.save(name, str(path))
            out[name] = (metrics, path, mlflow.pyfunc.load_model(str(path)))
        yield out


def answer(saved: dict[str, Any], name: str, frame: pd.DataFrame) -> pd.DataFrame:
    result: pd.DataFrame = saved[name][2].predict(frame)
    return result


def test_the_ten_templates() -> None:
    found = ailib.templates()
    assert list(found) == list(OUTPUTS)
    for name, t in found.items():
        assert ailib.get(name) == t
        assert t.title and t.description and t.name == name
        assert set(t.columns) <= set(t.sample(50).columns)
    assert ailib.get("sentiment").packages == ("vaderSentiment==3.3.2",)
    with pytest.raises(KeyError) as err:
        ailib.get("nosuch")
    assert "nosuch" in str(err.value) and "fraud-detection" in str(err.value)


def test_samples_are_deterministic() -> None:
    for t in ailib.templates().values():
        pd.testing.assert_frame_equal(t.sample(60), t.sample(60))


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_saved_model_answers_its_example(saved: dict[str, Any], name: str) -> None:
    metrics, path, model = saved[name]
    assert metrics["rows"] > 0 and len(metrics) > 1
    spec = yaml.safe_load((Path(path) / "MLmodel").read_text())
    assert spec["signature"]["inputs"] and spec["signature"]["outputs"]
    assert spec["saved_input_example_info"]["artifact_path"] == "input_example.json"
    assert (Path(path) / "input_example.json").exists()
    assert type(model.unwrap_python_model()).__module__.startswith("lakehub.ailib.")

    example = ailib.get(name).example()
    assert 1 <= len(example) <= 3
    out = answer(saved, name, example)
    assert list(out.columns) == OUTPUTS[name] and len(out) == len(example)
    assert out.notna().all().all()

    many = pd.concat([example] * 150, ignore_index=True)
    out_many = answer(saved, name, many)
    assert len(out_many) == len(many)
    pd.testing.assert_frame_equal(
        out_many.iloc[: len(example)].reset_index(drop=True), out.reset_index(drop=True)
    )


def test_anomaly_detection(saved: dict[str, Any]) -> None:
    ordinary_and_odd = pd.DataFrame(
        {"cpu": [41.0, 99.0], "memory": [55.0, 98.0], "latency": [80.0, 2800.0]}
    )
    out = answer(saved, "anomaly-detection", ordinary_and_odd)
    assert list(out["anomaly"]) == [False, True]
    assert out["score"][1] > out["score"][0]
    assert 0 < saved["anomaly-detection"][0]["held_out_anomaly_rate"] < 0.15


def test_association_rules(saved: dict[str, Any]) -> None:
    out = answer(saved, "association-rules", pd.DataFrame({"items": ["pasta, tomato sauce", ""]}))
    assert out["recommendations"][0].split(",")[0] == "parmesan"
    assert out["confidence"][0] > 0.5
    assert out["recommendations"][1] == "" and out["confidence"][1] == 0
    assert saved["association-rules"][0]["hit_rate"] > 0.4


def test_correlation(saved: dict[str, Any]) -> None:
    out = answer(saved, "correlation", pd.DataFrame({"feature": ["hot_drink_sales", "nosuch"]}))
    assert out["most_correlated"][0] == "temperature" and out["coefficient"][0] < -0.8
    assert out["most_correlated"][1] == "" and pd.isna(out["coefficient"][1])


def test_duplicate_bug_detection(saved: dict[str, Any]) -> None:
    out = answer(saved, "duplicate-bug-detection", ailib.get("duplicate-bug-detection").example())
    assert list(out["duplicate_of"]) == [1001, 1003]
    assert (out["similarity"] > 0.4).all()
    new = answer(saved, "duplicate-bug-detection", pd.DataFrame({"title": ["zebra quantum"]}))
    assert new["similarity"][0] < 0.2


def test_flake_analysis(saved: dict[str, Any]) -> None:
    out = answer(saved, "flake-analysis", ailib.get("flake-analysis").example())
    assert list(out["flaky"]) == [True, False]
    assert out["probability"][0] > out["probability"][1]
    assert saved["flake-analysis"][0]["accuracy"] > 0.8


def test_fraud_detection(saved: dict[str, Any]) -> None:
    out = answer(saved, "fraud-detection", ailib.get("fraud-detection").example())
    assert out["probability"][1] > out["probability"][0]
    assert list(out["fraud"]) == [False, True]
    assert saved["fraud-detection"][0]["roc_auc"] > 0.85


def test_matrix_factorization(saved: dict[str, Any]) -> None:
    metrics = saved["matrix-factorization"][0]
    assert metrics["rmse"] < metrics["rmse_of_mean"]
    out = answer(
        saved, "matrix-factorization", pd.DataFrame({"user_id": [1, 99999], "item_id": [3, 3]})
    )
    assert ((out["rating"] >= 1) & (out["rating"] <= 5)).all()


def test_regression(saved: dict[str, Any]) -> None:
    assert saved["regression"][0]["r2"] > 0.3


def test_sentiment(saved: dict[str, Any]) -> None:
    texts = ["I love this, it is great", "terrible, I hate it", "The parcel came on Monday."]
    out = answer(saved, "sentiment", pd.DataFrame({"text": texts}))
    assert list(out["label"]) == ["positive", "negative", "neutral"]
    assert out["compound"][0] > 0.5 > -0.5 > out["compound"][1]


def test_topic_modelling(saved: dict[str, Any]) -> None:
    from lakehub.ailib.topic_modelling import SUBJECTS

    words = SUBJECTS[3].split()  # space
    docs = [" ".join(words), " ".join(reversed(words)), " ".join(words[:6] * 2)]
    out = answer(saved, "topic-modelling", pd.DataFrame({"text": docs}))
    assert out["topic"].nunique() == 1
    assert set(out["top_words"][0].split(", ")) & set(words)
    cooking = answer(saved, "topic-modelling", pd.DataFrame({"text": [SUBJECTS[1]]}))
    assert cooking["topic"][0] != out["topic"][0]


def test_retraining_on_user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_iris

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    iris = load_iris(as_frame=True).frame
    model = ailib.get("correlation").train(iris)
    out = model.predict(None, pd.DataFrame({"feature": ["petal length (cm)"]}))
    assert out["most_correlated"][0] == "petal width (cm)"

    cards = ailib.get("fraud-detection").sample(300)
    cards["fraud"] = cards["fraud"].map({0: "no", 1: "yes"})  # labels as text
    metrics = ailib.save("fraud-detection", str(tmp_path / "cards"), cards)
    assert metrics["rows"] == 300


def test_missing_columns_are_named(tmp_path: Path) -> None:
    cards = ailib.get("fraud-detection").sample(100).drop(columns=["hour", "online"])
    with pytest.raises(ailib.MissingColumns) as err:
        ailib.save("fraud-detection", str(tmp_path / "m"), cards)
    assert isinstance(err.value, ValueError)
    assert "hour" in str(err.value) and "online" in str(err.value)
    assert err.value.missing == ["hour", "online"]
    assert not (tmp_path / "m").exists()
    with pytest.raises(ailib.MissingColumns, match="log"):
        ailib.log("flake-analysis", pd.DataFrame({"flaky": [True, False]}))


def test_log_registers_a_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    try:
        uri = ailib.log("correlation")
        assert uri == "models:/ailib-correlation/1"
        model = mlflow.pyfunc.load_model(uri)
        out = model.predict(ailib.get("correlation").example())
        assert list(out["most_correlated"]) == ["ice_cream_sales", "umbrella_sales"]
        run = mlflow.last_active_run()
        assert run is not None
        assert run.data.params == {"template": "correlation", "rows": str(ailib.SAMPLE_ROWS)}
        assert "held_out_agreement" in run.data.metrics

        unregistered = ailib.log("correlation", register=False)
        assert unregistered.startswith("models:/") and "ailib-correlation" not in unregistered
    finally:
        mlflow.end_run()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "MLFLOW_TRACKING_URI": (cwd / "store").as_uri()}
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "lakehub.ailib", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_cli(tmp_path: Path) -> None:
    done = cli("train", "nosuch", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "nosuch" in done.stderr and "fraud-detection" in done.stderr

    ailib.get("regression").sample(40).drop(columns="bmi").to_csv(tmp_path / "d.csv", index=False)
    done = cli("train", "regression", "--data", str(tmp_path / "d.csv"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "bmi" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "store").exists()  # refused before any run

    ailib.get("regression").sample(60).to_parquet(tmp_path / "d.parquet")
    done = cli("train", "regression", "--data", str(tmp_path / "d.parquet"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "models:/ailib-regression/1"


def test_importing_the_library_is_light() -> None:
    code = (
        "import sys, lakehub.ailib as a; a.templates(); a.get('regression');"
        "print(sorted(m for m in ('pandas', 'numpy', 'sklearn', 'mlflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
