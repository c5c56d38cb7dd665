"""One model replica alone (``python -m lakehub.singleuser.serve``), no hub: the Open Inference
Protocol v2 and MLflow's ``/invocations`` over plain HTTP, with and without ``--batch``, as a
matrix of good and bad requests; batching under concurrent clients, pipelining and a bad request
in a burst.

Three models, saved once for the module: an iris decision tree (scikit-learn: the replica's fast
path, a float matrix), the same tree pickled with a tensor signature and ``predict_proba`` as its
predict function (``proba``), and ``words``, a pyfunc model on a string and a number that answers a
DataFrame of a string and the number of rows it was given in that call (so a test can see
which requests were predicted together); it refuses the word ``boom``."""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubs import free_port

pytest.importorskip("mlflow")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

KEY = "replica-test-key"
MAX_BODY = 64 * 1024  # LAKEHUB_REPLICA_MAX_BODY for every replica here
READY = 120.0
WORDS_CODE = """
import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class Words(PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["word"] == "boom").any():
            raise ValueError("boom is not a word")
        label = model_input["word"].str.upper() + "/" + model_input["x"].map("{:g}".format)
        return pd.DataFrame({"label": label, "rows": len(model_input)})


mlflow.models.set_model(Words())
"""
REPLICAS = {  # name -> (model, --batch)
    "iris": ("iris", False),
    "iris-batch": ("iris", True),
    "words": ("words", False),
    "words-batch": ("words", True),
    "proba": ("proba", False),
}
VERSIONS = {"iris": "1", "proba": "2", "words": "3"}
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


class Replica:
    def __init__(self, model: str, path: Path, batch: bool, log: Path) -> None:
        self.model, self.version = model, VERSIONS[model]
        self.batch = batch
        self.port = free_port()
        self.log = log
        env = {
            **os.environ,
            "LAKEHUB_REPLICA_KEY": KEY,
            "LAKEHUB_REPLICA_MAX_BODY": str(MAX_BODY),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        argv = [sys.executable, "-m", "lakehub.singleuser.serve", "--model", str(path)]
        argv += ["--name", model, "--version", self.version, "--port", str(self.port)]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*argv, *(["--batch"] if batch else [])], env=env, stdout=out, stderr=out
            )
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, headers={"X-LakeHub-Replica-Key": KEY})

    def wait(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.http.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()

    def reap(self) -> None:
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def tree() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True, as_frame=True)
    return DecisionTreeClassifier(random_state=0).fit(x, y), x, y


@pytest.fixture(scope="module")
def replicas(tree: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Replica]]:
    import mlflow
    from mlflow.models import infer_signature

    tmp = tmp_path_factory.mktemp("replicas")
    model, x, y = tree
    mlflow.sklearn.save_model(
        model,
        tmp / "iris",
        serialization_format="cloudpickle",
        signature=infer_signature(x, y),
        input_example=x.head(2),
        pip_requirements=["scikit-learn"],  # no inference of the requirements (a subprocess)
    )
    mlflow.sklearn.save_model(
        model,
        tmp / "proba",
        serialization_format="pickle",
        signature=infer_signature(x.to_numpy(), model.predict_proba(x)),
        input_example=x.head(2).to_numpy(),
        pyfunc_predict_fn="predict_proba",
        pip_requirements=["scikit-learn"],
    )
    (tmp / "words.py").write_text(WORDS_CODE)
    example = pd.DataFrame({"word": ["hi", "yo"], "x": [1.0, 2.5]})
    answer = pd.DataFrame({"label": ["HI/1", "YO/2.5"], "rows": [2, 2]})
    mlflow.pyfunc.save_model(
        tmp / "words",
        python_model=str(tmp / "words.py"),
        signature=infer_signature(example, answer),
        input_example=example,
        pip_requirements=["mlflow"],
    )
    started: dict[str, Replica] = {}
    try:
        for name, (m, batch) in REPLICAS.items():
            started[name] = Replica(m, tmp / m, batch, tmp / f"{name}.log")
        deadline = time.monotonic() + READY
        for r in started.values():
            r.wait(deadline)
        yield started
    finally:
        for r in started.values():
            r.stop()
        for r in started.values():
            r.reap()


IRIS = ["iris", "iris-batch"]
WORDS = ["words", "words-batch"]


@pytest.fixture
def replica(request: pytest.FixtureRequest, replicas: dict[str, Replica]) -> Replica:
    return replicas[request.param]


def rows_of(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(n, 4))


def expected(tree: Any, rows: np.ndarray) -> list[int]:
    return [int(v) for v in tree[0].predict(pd.DataFrame(rows, columns=COLUMNS))]


def matrix(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    t = {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
    return {"inputs": [t], **extra}


def binary(doc: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(doc).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def unbinary(resp: httpx.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A binary response: its JSON header and each binary output's bytes."""
    n = int(resp.headers["Inference-Header-Content-Length"])
    doc, rest, blobs = json.loads(resp.content[:n]), resp.content[n:], {}
    for o in doc["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            blobs[o["name"]], rest = rest[:size], rest[size:]
    assert rest == b""
    return doc, blobs


def strings(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def unstrings(blob: bytes) -> list[str]:
    out, pos = [], 0
    while pos < len(blob):
        (n,) = struct.unpack_from("<I", blob, pos)
        out.append(blob[pos + 4 : pos + 4 + n].decode())
        pos += 4 + n
    return out


def pipelined(port: int, requests: list[tuple[str, str, bytes]]) -> list[tuple[int, Any]]:
    """Requests (method, path, body) written at once on one connection; the answers read in
    order: (status, JSON body)."""
    raw = b""
    for method, path, body in requests:
        raw += (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-LakeHub-Replica-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    answers: list[tuple[int, Any]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(raw)
        buf = b""
        while len(answers) < len(requests):
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, f"closed after {len(answers)} answers"
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            fields = dict(line.lower().split(": ", 1) for line in lines[1:])
            length = int(fields["content-length"])
            while len(buf) < length:
                chunk = s.recv(65536)
                assert chunk
                buf += chunk
            answers.append((int(lines[0].split()[1]), json.loads(buf[:length])))
            buf = buf[length:]
    return answers


# the protocol's surface ------------------------------------------------------------------------
@pytest.mark.parametrize("replica", IRIS, indirect=True)
def test_health_and_metadata(replica: Replica) -> None:
    c = replica.http
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").json() == {"ready": True}
    assert c.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    server = c.get("/v2").json()
    assert server["name"] == "lakehub" and "binary_tensor_data" in server["extensions"]
    meta = c.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
    assert meta["platform"] == "mlflow-sklearn"
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [(n, "FP64") for n in COLUMNS]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("target", "INT64")]
    assert c.get("/v2/models/iris/versions/1").json() == meta


def test_words_metadata(replicas: dict[str, Replica]) -> None:
    meta = replicas["words"].http.get("/v2/models/words/versions/3").json()
    assert meta["platform"] == "mlflow-pyfunc"
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("word", "BYTES"),
        ("x", "FP64"),
    ]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("label", "BYTES"),
        ("rows", "INT64"),
    ]


def test_a_tensor_signature_and_its_predict_function(
    replicas: dict[str, Replica], tree: Any
) -> None:
    """A pickled model signed with tensors, logged to predict probabilities: its metadata are
    the signature's tensors, its answers the probabilities (the function it was logged with)."""
    c = replicas["proba"].http
    meta = c.get("/v2/models/proba").json()
    assert meta["platform"] == "mlflow-sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1, 3]}]
    rows = rows_of(5, seed=3)
    r = c.post("/v2/models/proba/infer", json=matrix(rows))
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["shape"] == [5, 3]
    want = tree[0].predict_proba(pd.DataFrame(rows, columns=COLUMNS))
    assert np.allclose(np.asarray(out["data"]).reshape(5, 3), want)


@pytest.mark.parametrize("replica", IRIS, indirect=True)
@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/v2/models/iris/versions/1/infer", 200, None),
        ("POST", "/v2/models/iris/versions/2/infer", 404, "no version '2'"),
        ("GET", "/v2/models/iris/versions/2", 404, "no version '2'"),
        ("POST", "/v2/models/other/infer", 404, "no model named 'other'"),
        ("GET", "/v2/models/other", 404, "no model named 'other'"),
        ("GET", "/v2/models/iris/infer", 405, "POST"),
        ("GET", "/v2/nowhere", 404, "no such path"),
        ("GET", "/nowhere", 404, "no such path"),
    ],
)
def test_paths(replica: Replica, method: str, path: str, status: int, message: str | None) -> None:
    body = json.dumps(matrix(rows_of(1))).encode() if method == "POST" else None
    r = replica.http.request(method, path, content=body)
    assert r.status_code == status, r.text
    if message is not None:
        assert message in r.json()["error"]


@pytest.mark.parametrize("replica", IRIS, indirect=True)
@pytest.mark.parametrize("key", [None, "wrong", KEY + "x", ""])
@pytest.mark.parametrize("path", ["/v2/health/ready", "/v2/models/iris/infer", "/invocations"])
def test_the_key_is_required(replica: Replica, key: str | None, path: str) -> None:
    headers = {} if key is None else {"X-LakeHub-Replica-Key": key}
    body = json.dumps(matrix(rows_of(1))).encode()
    r = httpx.post(replica.url + path, content=body, headers=headers)
    assert r.status_code == 403 and "gateway" in r.json()["error"]


# infer: the forms of a request -----------------------------------------------------------------
def _nested(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    return json.dumps(matrix(rows, id="r-1")).encode(), {}


def _flat(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    doc = matrix(rows, id="r-1")
    doc["inputs"][0]["data"] = rows.reshape(-1).tolist()
    return json.dumps(doc).encode(), {}


def _columns(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    tensors = [
        {"name": n, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
        for i, n in enumerate(COLUMNS)
    ]
    return json.dumps({"id": "r-1", "inputs": tensors[::-1]}).encode(), {}


def _column_matrices(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    tensors = [
        {"name": n, "shape": [len(rows), 1], "datatype": "FP64", "data": rows[:, [i]].tolist()}
        for i, n in enumerate(COLUMNS)
    ]
    return json.dumps({"id": "r-1", "inputs": tensors}).encode(), {}


def _fp32(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    doc = matrix(rows, id="r-1")
    doc["inputs"][0].update(datatype="FP32", data=rows.astype("float32").tolist())
    return json.dumps(doc).encode(), {}


def _binary_fp32(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    blob = rows.astype("<f4").tobytes()
    t = {"name": "x", "shape": list(rows.shape), "datatype": "FP32"}
    t["parameters"] = {"binary_data_size": len(blob)}
    return binary({"id": "r-1", "inputs": [t]}, [blob])


def _binary_fp64_columns(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    tensors, blobs = [], []
    for i, n in enumerate(COLUMNS):
        blob = rows[:, i].astype("<f8").tobytes()
        tensors.append(
            {
                "name": n,
                "shape": [len(rows)],
                "datatype": "FP64",
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    return binary({"id": "r-1", "inputs": tensors}, blobs)


FORMS: dict[str, Callable[[np.ndarray], tuple[bytes, dict[str, str]]]] = {
    "nested": _nested,
    "flat": _flat,
    "columns": _columns,
    "column-matrices": _column_matrices,
    "fp32": _fp32,
    "binary-fp32": _binary_fp32,
    "binary-fp64-columns": _binary_fp64_columns,
}


@pytest.mark.parametrize("replica", IRIS, indirect=True)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n", [1, 7])
def test_infer_forms(replica: Replica, tree: Any, form: str, n: int) -> None:
    rows = rows_of(n, seed=n)
    body, headers = FORMS[form](rows)
    r = replica.http.post("/v2/models/iris/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == "r-1" and doc["model_name"] == "iris" and doc["model_version"] == "1"
    (out,) = doc["outputs"]
    assert out["name"] == "target" and out["datatype"] == "INT64" and out["shape"] == [n]
    sent = rows.astype("float32").astype("float64") if "fp32" in form else rows
    assert out["data"] == expected(tree, sent)


@pytest.mark.parametrize("replica", IRIS, indirect=True)
@pytest.mark.parametrize(
    "outputs",
    [
        {"outputs": [{"name": "target"}]},
        {"outputs": [{"name": "target", "parameters": {"binary_data": True}}]},
        {"parameters": {"binary_data_output": True}},
    ],
)
def test_requested_and_binary_outputs(replica: Replica, tree: Any, outputs: dict[str, Any]) -> None:
    rows = rows_of(5)
    r = replica.http.post("/v2/models/iris/infer", json=matrix(rows, id=7, **outputs))
    assert r.status_code == 200, r.text
    if "Inference-Header-Content-Length" not in r.headers:
        assert r.json()["outputs"][0]["data"] == expected(tree, rows)
        return
    assert r.headers["content-type"] == "application/octet-stream"
    doc, blobs = unbinary(r)
    assert doc["id"] == "7" and doc["outputs"][0]["parameters"]["binary_data_size"] == 5 * 8
    assert np.frombuffer(blobs["target"], "<i8").tolist() == expected(tree, rows)


@pytest.mark.parametrize("replica", WORDS, indirect=True)
@pytest.mark.parametrize("form", ["json", "binary-in", "binary-out", "one-output"])
def test_bytes_tensors(replica: Replica, form: str) -> None:
    words, xs = ["héllo", "", "two words"], [1.0, -2.5, 3e10]
    word: dict[str, Any] = {"name": "word", "shape": [3], "datatype": "BYTES", "data": words}
    x = {"name": "x", "shape": [3, 1], "datatype": "FP64", "data": [[v] for v in xs]}
    doc: dict[str, Any] = {"id": "w", "inputs": [word, x]}
    body, headers = json.dumps(doc).encode(), {}
    if form == "binary-in":
        blob = strings(words)
        del word["data"]
        word["parameters"] = {"binary_data_size": len(blob)}
        body, headers = binary(doc, [blob])
    elif form == "binary-out":
        body = json.dumps({**doc, "parameters": {"binary_data_output": True}}).encode()
    elif form == "one-output":
        body = json.dumps({**doc, "outputs": [{"name": "label"}]}).encode()
    r = replica.http.post("/v2/models/words/versions/3/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    labels = ["HÉLLO/1", "/-2.5", "TWO WORDS/3e+10"]
    if form == "binary-out":
        answer, blobs = unbinary(r)
        assert [o["datatype"] for o in answer["outputs"]] == ["BYTES", "INT64"]
        assert unstrings(blobs["label"]) == labels
        assert np.frombuffer(blobs["rows"], "<i8").tolist() == [3, 3, 3]
        return
    answer = r.json()
    assert answer["id"] == "w"
    got = {o["name"]: o["data"] for o in answer["outputs"]}
    assert got == (
        {"label": labels} if form == "one-output" else {"label": labels, "rows": [3] * 3}
    )


# bad input -------------------------------------------------------------------------------------
def _t(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4], **fields}


def _cols(names: list[str], **fields: Any) -> list[dict[str, Any]]:
    return [{"name": n, "shape": [1], "datatype": "FP64", "data": [1.0], **fields} for n in names]


def _bin(size: int, sent: int, datatype: str = "FP64", shape: Any = (1, 4)) -> Any:
    t = {"name": "x", "shape": list(shape), "datatype": datatype}
    t["parameters"] = {"binary_data_size": size}
    return binary({"inputs": [t]}, [b"\x05" * sent])


BAD: dict[str, tuple[Any, dict[str, str], str]] = {  # body, headers, part of the error
    "not-json": (b"{nope", {}, "not JSON"),
    "empty": (b"", {}, "not JSON"),
    "not-an-object": ([1, 2], {}, "'inputs'"),
    "no-inputs": ({}, {}, "'inputs'"),
    "empty-inputs": ({"inputs": []}, {}, "'inputs'"),
    "unnamed-input": ({"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}, {}, "name"),
    "bad-datatype": ({"inputs": [_t(datatype="FP99")]}, {}, "unknown datatype 'FP99'"),
    "list-datatype": ({"inputs": [_t(datatype=["FP64"])]}, {}, "unknown datatype"),
    "bad-shape": ({"inputs": [_t(shape="1x4")]}, {}, "'shape' must be a list"),
    "negative-shape": ({"inputs": [_t(shape=[-1, 4])]}, {}, "'shape' must be a list"),
    "count-mismatch": ({"inputs": [_t(shape=[2, 4])]}, {}, "4 values for a shape of 8"),
    "no-data": ({"inputs": [_t(data=None)]}, {}, "has no 'data'"),
    "wrong-type-values": ({"inputs": [_t(data=["a", "b", "c", "d"])]}, {}, "not all FP64"),
    "ragged": ({"inputs": [_t(data=[[1, 2], [3, [4]]])]}, {}, "input 'x'"),
    "missing-column": ({"inputs": _cols(COLUMNS[:3])}, {}, "missing: petal width (cm)"),
    "columns-of-different-lengths": (
        {"inputs": [*_cols(COLUMNS[:3]), _cols(COLUMNS[3:], shape=[2], data=[1, 2])[0]]},
        {},
        "different lengths",
    ),
    "three-wide-matrix": ({"inputs": [_t(shape=[1, 3], data=[1, 2, 3])]}, {}, "[n, 4]"),
    "unknown-output": ({"inputs": [_t()], "outputs": [{"name": "nope"}]}, {}, "no output 'nope'"),
    "outputs-not-a-list": ({"inputs": [_t()], "outputs": "target"}, {}, "'outputs'"),
    "parameters-not-an-object": ({"inputs": [_t()], "parameters": [1]}, {}, "'parameters'"),
    "input-parameters-not-an-object": ({"inputs": [_t(parameters=[1])]}, {}, "'parameters'"),
    "output-parameters-not-an-object": (
        {"inputs": [_t()], "outputs": [{"name": "target", "parameters": "binary"}]},
        {},
        "'parameters'",
    ),
    "binary-size-past-the-end": (*_bin(64, 32), "binary_data_size is past the body's end"),
    "binary-size-wrong": (*_bin(24, 32), "24 bytes for 4 FP64 values"),
    "binary-bytes-length-cut-off": (*_bin(3, 3, "BYTES", [1]), "length is cut off"),
    "binary-bytes-cut-off": (*_bin(6, 6, "BYTES", [1]), "element is cut off"),
    "binary-header-past-the-end": (
        json.dumps({"inputs": [_t()]}).encode(),
        {"Inference-Header-Content-Length": "100000"},
        "past the body's end",
    ),
}


@pytest.mark.parametrize("replica", IRIS, indirect=True)
@pytest.mark.parametrize("case", BAD)
def test_bad_input(replica: Replica, case: str) -> None:
    body, headers, message = BAD[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = replica.http.post("/v2/models/iris/infer", content=content, headers=headers)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    # the connection and the replica live on
    assert replica.http.post("/v2/models/iris/infer", json=matrix(rows_of(1))).status_code == 200


@pytest.mark.parametrize("replica", WORDS, indirect=True)
@pytest.mark.parametrize(
    ("x", "message"),
    [
        ({"datatype": "BYTES", "data": ["abc"]}, "x"),  # not a number: the signature refuses it
        ({"datatype": "FP64", "data": [1.0], "name": "y"}, "missing: x"),
    ],
)
def test_bad_input_for_a_pyfunc_model(replica: Replica, x: dict[str, Any], message: str) -> None:
    word = {"name": "word", "shape": [1], "datatype": "BYTES", "data": ["a"]}
    doc = {"inputs": [word, {"name": "x", "shape": [1], **x}]}
    r = replica.http.post("/v2/models/words/infer", json=doc)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    doc = {"inputs": [{**word, "data": ["boom"]}, {"name": "x", "shape": [1], "datatype": "FP64"}]}
    doc["inputs"][1]["data"] = [1]
    r = replica.http.post("/v2/models/words/infer", json=doc)
    assert r.status_code == 400 and "boom is not a word" in r.json()["error"], r.text


@pytest.mark.parametrize("replica", IRIS, indirect=True)
def test_bodies_too_large_and_chunked_are_refused(replica: Replica) -> None:
    with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
            b"X-LakeHub-Replica-Key: %s\r\nContent-Length: %d\r\n\r\n"
            % (KEY.encode(), MAX_BODY + 1)
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in head
    assert json.loads(body) == {"error": f"bodies are limited to {MAX_BODY} bytes"}
    # a body at the limit is read (and refused for what it is)
    r = replica.http.post("/v2/models/iris/infer", content=b" " * MAX_BODY)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    chunks = iter([json.dumps(matrix(rows_of(1))).encode()])
    r = httpx.post(
        replica.url + "/v2/models/iris/infer",
        content=chunks,
        headers={"X-LakeHub-Replica-Key": KEY},
    )
    assert r.status_code == 400 and "chunked" in r.json()["error"]


# /invocations ------------------------------------------------------------------------------------
def _invocation(case: str, rows: np.ndarray) -> tuple[bytes, str]:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    docs = {
        "dataframe_split": {"dataframe_split": frame.to_dict(orient="split", index=False)},
        "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
        "instances": {"instances": rows.tolist()},
        "instance-records": {"instances": frame.to_dict(orient="records")},
        "inputs-columns": {"inputs": frame.to_dict(orient="list")},
    }
    if case == "csv":
        return frame.to_csv(index=False).encode(), "text/csv"
    return json.dumps(docs[case]).encode(), "application/json"


@pytest.mark.parametrize("replica", IRIS, indirect=True)
@pytest.mark.parametrize(
    "case",
    [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "instance-records",
        "inputs-columns",
        "csv",
    ],
)
def test_invocations(replica: Replica, tree: Any, case: str) -> None:
    rows = rows_of(6, seed=3)
    body, ctype = _invocation(case, rows)
    r = replica.http.post("/invocations", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected(tree, rows)}


@pytest.mark.parametrize("replica", IRIS, indirect=True)
@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (
            {"dataframe_split": {"columns": COLUMNS[:3], "data": [[1, 2, 3]]}},
            "application/json",
            "missing: petal width (cm)",
        ),
        ({"dataframe_records": [{"a": 1}]}, "application/json", "missing: sepal length (cm)"),
        ({"rows": [[1, 2, 3, 4]]}, "application/json", "dataframe_split"),
        (b"nope", "application/json", "not JSON"),
        (b"a,b\n1,2\n", "text/csv", "missing: sepal length (cm)"),
    ],
)
def test_bad_invocations(replica: Replica, body: Any, ctype: str, message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = replica.http.post("/invocations", content=content, headers={"Content-Type": ctype})
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_invocations_of_a_pyfunc_model(replicas: dict[str, Replica]) -> None:
    doc = {"dataframe_records": [{"word": "a", "x": 1.5}, {"word": "b", "x": 2}]}
    r = replicas["words-batch"].http.post("/invocations", json=doc)
    assert r.json() == {"predictions": [{"label": "A/1.5", "rows": 2}, {"label": "B/2", "rows": 2}]}


# batching --------------------------------------------------------------------------------------
@pytest.mark.parametrize("replica", IRIS, indirect=True)
def test_concurrent_clients_get_their_own_answers(replica: Replica, tree: Any) -> None:
    clients, each = 32, 20
    start = threading.Barrier(clients)
    wrong: list[str] = []

    def client(c: int) -> None:
        rng = random.Random(c)
        with httpx.Client(base_url=replica.url, headers={"X-LakeHub-Replica-Key": KEY}) as h:
            start.wait()
            for i in range(each):
                rows = rows_of(rng.randint(1, 5), seed=c * 1000 + i)
                r = h.post("/v2/models/iris/infer", json=matrix(rows, id=f"{c}-{i}"))
                got = r.json() if r.status_code == 200 else r.text
                if got != {
                    "model_name": "iris",
                    "model_version": "1",
                    "id": f"{c}-{i}",
                    "outputs": [
                        {
                            "name": "target",
                            "shape": [len(rows)],
                            "datatype": "INT64",
                            "data": expected(tree, rows),
                        }
                    ],
                }:
                    wrong.append(f"{c}-{i}: {got}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong[:3]


def _words(n: int, i: int, word: str | None = None) -> bytes:
    inputs = [
        {"name": "word", "shape": [n], "datatype": "BYTES", "data": [word or f"w{i}"] * n},
        {"name": "x", "shape": [n], "datatype": "FP64", "data": [float(i)] * n},
    ]
    return json.dumps({"id": str(i), "inputs": inputs}).encode()


@pytest.mark.parametrize("replica", ["iris", "iris-batch", "words", "words-batch"], indirect=True)
def test_pipelined_requests_are_answered_in_order(replica: Replica) -> None:
    """Inference requests (batched or not) between requests answered at once."""
    path = f"/v2/models/{replica.model}/infer"
    requests: list[tuple[str, str, bytes]] = []
    for i in range(12):
        if i % 3 == 2:
            requests.append(("GET", f"/v2/models/{replica.model}/ready", b""))
        elif replica.model == "iris":
            requests.append(("POST", path, json.dumps(matrix(rows_of(1 + i % 4), id=i)).encode()))
        else:
            requests.append(("POST", path, _words(1 + i % 4, i)))
    answers = pipelined(replica.port, requests)
    for i, (status, doc) in enumerate(answers):
        assert status == 200, doc
        if i % 3 == 2:
            assert doc == {"name": replica.model, "ready": True}
        else:
            assert doc["id"] == str(i) and doc["outputs"][0]["shape"] == [1 + i % 4]
    if replica.model == "words":  # the rows each predict call was given
        rows = [doc["outputs"][1]["data"][0] for i, (_, doc) in enumerate(answers) if i % 3 != 2]
        together = sum(1 + i % 4 for i in range(12) if i % 3 != 2)
        mine = [1 + i % 4 for i in range(12) if i % 3 != 2]
        assert rows == ([together] * len(rows) if replica.batch else mine)


@pytest.mark.parametrize("replica", ["iris-batch", "words-batch"], indirect=True)
def test_a_bad_request_in_a_burst_fails_alone(replica: Replica) -> None:
    """A request that cannot be decoded is answered at once; one whose predict fails (the
    words model refuses "boom") makes its batch be predicted request by request."""
    path = f"/v2/models/{replica.model}/infer"
    bodies = []
    for i in range(10):
        if replica.model == "iris":
            bodies.append(json.dumps(matrix(rows_of(2), id=i)).encode())
        else:
            bodies.append(_words(2, i, word="boom" if i == 6 else None))
    bodies[3] = b'{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1]}]}'
    answers = pipelined(replica.port, [("POST", path, b) for b in bodies])
    bad = {3, 6} if replica.model == "words" else {3}
    assert [s for s, _ in answers] == [400 if i in bad else 200 for i in range(10)]
    assert "1 values for a shape of 8" in answers[3][1]["error"]
    for i, (status, doc) in enumerate(answers):
        if status == 200:
            assert doc["id"] == str(i)
    if replica.model == "words":
        assert "boom is not a word" in answers[6][1]["error"]
        # predicted alone after the batch failed: two rows each
        assert {doc["outputs"][1]["data"][0] for s, doc in answers if s == 200} == {2}


@pytest.mark.parametrize("replica", IRIS, indirect=True)
def test_a_keep_alive_connection_gets_its_answers_in_order(replica: Replica, tree: Any) -> None:
    with httpx.Client(base_url=replica.url, headers={"X-LakeHub-Replica-Key": KEY}) as h:
        for i in range(30):
            rows = rows_of(1 + i % 3, seed=i)
            r = h.post("/v2/models/iris/infer", json=matrix(rows, id=f"k{i}"))
            assert r.json()["id"] == f"k{i}"
            assert r.json()["outputs"][0]["data"] == expected(tree, rows)
            assert r.headers["connection"] == "keep-alive"


@pytest.mark.parametrize("replica", IRIS, indirect=True)
def test_a_client_that_stops_sending_still_gets_its_answers(replica: Replica) -> None:
    body = json.dumps(matrix(rows_of(2), id="eof")).encode()
    request = (
        f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nX-LakeHub-Replica-Key: {KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as s:
        s.sendall(request * 2)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.count(b'"id":"eof"') == 2
