"""One replica of a model endpoint: ``python -m lakehub.singleuser.serve --model DIR --name NAME
--version V --port PORT``, run by the control plane in the model's own environment, as its
owner.

It loads an MLflow model from ``DIR`` (scikit-learn models as their estimator, everything else
as a pyfunc model), predicts once on its input example, then listens on ``127.0.0.1:PORT`` and
answers the Open Inference Protocol v2 (:mod:`lakehub.singleuser.oip`) and MLflow's
``/invocations``. Only LakeHub's gateway talks to it: every request must carry the key the
control plane put in ``LAKEHUB_REPLICA_KEY`` (other accounts on the machine can reach the port,
not the key), so authentication and access live in one place, the gateway.

The HTTP/1.1 server is a plain asyncio protocol (keep-alive, ``Content-Length`` bodies; no
chunked requests: the gateway never sends them), so a replica needs nothing beyond the model's
own packages; uvloop is used when the environment has it. With ``--batch``, inference requests
that arrived together (in one turn of the event loop) are predicted as one batch; an idle
replica never waits for more.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import sys
import warnings
from typing import Any
from urllib.parse import unquote

from lakehub.singleuser.oip import BINARY_HEADER, OIPError, Request, decode, encode

MAX_BODY = 256 * 2**20
MAX_HEAD = 64 * 2**10
KEY_HEADER = b"x-lakehub-replica-key"
NUMERIC = {"double", "float", "long", "integer", "boolean"}
MLFLOW_TO_OIP = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


class Served:
    """The loaded model, its signature as tensors, and predict from tensors or from MLflow's
    scoring formats."""

    def __init__(self, path: str, name: str, version: str) -> None:
        import mlflow.pyfunc
        from mlflow.models import Model

        self.name, self.version = name, version
        meta = Model.load(path)
        self.signature = meta.signature
        loader = meta.flavors.get("python_function", {}).get("loader_module")
        self.native: Any = None
        if loader == "mlflow.sklearn":
            import mlflow.sklearn

            self.native = mlflow.sklearn.load_model(path)
            # given arrays, a model fitted on a DataFrame warns on every call
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self.pyfunc = None if self.native is not None else mlflow.pyfunc.load_model(path)
        self.platform = f"mlflow-{loader.rsplit('.', 1)[-1] if loader else 'pyfunc'}"
        self.columns: list[tuple[str, str]] | None = None
        inputs = self.signature.inputs if self.signature else None
        if inputs is not None and not inputs.is_tensor_spec():
            self.columns = [(c.name or str(i), c.type.name) for i, c in enumerate(inputs.inputs)]
        self.fast = (
            self.native is not None
            and bool(self.columns)
            and all(t in NUMERIC for _, t in self.columns or ())
        )
        try:
            self.example = meta.load_input_example(path)
        except Exception:  # an example that does not load only costs the warm-up
            self.example = None
        if self.example is not None:
            self.predict_frame(self._frame(self.example))  # warm, and fail now if it cannot

    # metadata ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        inputs: list[dict[str, Any]] = []
        if self.columns is not None:
            inputs = [
                {"name": n, "datatype": MLFLOW_TO_OIP.get(t, "BYTES"), "shape": [-1]}
                for n, t in self.columns
            ]
        elif self.signature is not None and self.signature.inputs is not None:
            inputs = [
                _tensor_meta(s, i, "input") for i, s in enumerate(self.signature.inputs.inputs)
            ]
        outputs: list[dict[str, Any]] = []
        out = self.signature.outputs if self.signature else None
        if out is not None:
            if out.is_tensor_spec():
                outputs = [_tensor_meta(s, i, "predict") for i, s in enumerate(out.inputs)]
            else:
                cols = [(c.name, c.type.name) for c in out.inputs]
                if len(cols) == 1 and not cols[0][0]:
                    cols = [("predict", cols[0][1])]
                outputs = [
                    {"name": n, "datatype": MLFLOW_TO_OIP.get(t, "BYTES"), "shape": [-1]}
                    for n, t in cols
                ]
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": inputs,
            "outputs": outputs,
        }

    def example_request(self) -> dict[str, Any]:
        """The input example as an OIP request (one tensor per column, or per input)."""
        if self.example is None:
            return {}
        import numpy as np
        import pandas as pd

        frame = self.example
        if isinstance(frame, pd.DataFrame):
            tensors = {str(c): frame[c].to_numpy() for c in frame.columns}
        elif isinstance(frame, dict):
            tensors = {k: np.asarray(v) for k, v in frame.items()}
        else:
            tensors = {"input-0": np.asarray(frame)}
        from lakehub.singleuser.oip import _to_json, datatype_of

        return {
            "inputs": [
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": datatype_of(a),
                    "data": _to_json(a, datatype_of(a)),
                }
                for n, a in tensors.items()
            ]
        }

    # predicting -------------------------------------------------------------------------------
    def infer(self, req: Request) -> dict[str, Any]:
        return self.outputs(self.predict_frame(self.model_input(req.inputs)))

    def model_input(self, inputs: dict[str, Any]) -> Any:
        import numpy as np
        import pandas as pd

        if self.columns is not None:
            names = [n for n, _ in self.columns]
            if all(n in inputs for n in names):
                cols = [inputs[n].reshape(-1) for n in names]
                if len({len(c) for c in cols}) > 1:
                    raise OIPError("the columns' tensors have different lengths")
                if self.fast:
                    return np.column_stack(cols).astype("float64", copy=False)
                return pd.DataFrame(dict(zip(names, cols, strict=True)))
            if len(inputs) == 1:
                (array,) = inputs.values()
                if array.ndim == 2 and array.shape[1] == len(names):
                    if self.fast:
                        return array.astype("float64", copy=False)
                    return pd.DataFrame(array, columns=names)
            missing = [n for n in names if n not in inputs]
            raise OIPError(
                f"the model takes the columns {', '.join(names)}; missing: "
                f"{', '.join(missing)} (or send one tensor of shape [n, {len(names)}])"
            )
        if len(inputs) == 1:
            return next(iter(inputs.values()))
        if self.signature is not None and self.signature.inputs is not None:
            return inputs  # named tensors
        return pd.DataFrame({k: v.reshape(-1) for k, v in inputs.items()})

    def _frame(self, example: Any) -> Any:
        """An input example as the model takes it (the fast path: a float matrix)."""
        import pandas as pd

        if self.fast and isinstance(example, pd.DataFrame):
            return example[[n for n, _ in self.columns or ()]].to_numpy(dtype="float64")
        return example

    def predict_frame(self, data: Any) -> Any:
        if self.native is not None:
            return self.native.predict(data)
        assert self.pyfunc is not None
        return self.pyfunc.predict(data)

    def outputs(self, result: Any) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        if isinstance(result, pd.DataFrame):
            return {str(c): _column(result[c]) for c in result.columns}
        if isinstance(result, pd.Series):
            return {"predict": _column(result)}
        if isinstance(result, dict):
            return {str(k): np.asarray(v) for k, v in result.items()}
        return {"predict": np.asarray(result)}

    def invocations(self, body: bytes, content_type: str) -> bytes:
        """MLflow's scoring protocol: ``dataframe_split``, ``dataframe_records``, ``instances``,
        ``inputs`` (JSON) or CSV; answers ``{"predictions": ...}``."""
        import io

        import numpy as np
        import pandas as pd

        if content_type.startswith("text/csv"):
            data: Any = pd.read_csv(io.BytesIO(body))
        else:
            try:
                doc = json.loads(body)
            except ValueError as err:
                raise OIPError(f"the body is not JSON: {err}") from None
            if not isinstance(doc, dict):
                raise OIPError("the body must be a JSON object")
            if "dataframe_split" in doc:
                split = doc["dataframe_split"]
                if not isinstance(split, dict):
                    raise OIPError("'dataframe_split' must be an object")
                data = pd.DataFrame(data=split.get("data"), columns=split.get("columns"))
            elif "dataframe_records" in doc:
                data = pd.DataFrame.from_records(doc["dataframe_records"])
            elif "instances" in doc or "inputs" in doc:
                raw = doc.get("instances", doc.get("inputs"))
                data = {k: np.asarray(v) for k, v in raw.items()} if isinstance(raw, dict) else None
                if data is None:
                    data = np.asarray(raw)
                    if self.columns is not None and data.ndim == 2:
                        data = pd.DataFrame(data, columns=[n for n, _ in self.columns])
            else:
                raise OIPError(
                    "the body needs one of dataframe_split, dataframe_records, instances, inputs"
                )
        if self.columns is not None and isinstance(data, pd.DataFrame):
            names = [n for n, _ in self.columns]
            missing = [n for n in names if n not in data.columns]
            if missing:
                raise OIPError(
                    f"the model takes the columns {', '.join(names)}; missing: {', '.join(missing)}"
                )
            if self.fast:
                data = data[names].to_numpy(dtype="float64")
        out = self.predict_frame(data)
        if isinstance(out, pd.DataFrame):
            preds: Any = json.loads(out.to_json(orient="records"))
        elif isinstance(out, pd.Series):
            preds = json.loads(out.to_json(orient="values"))
        else:
            preds = np.asarray(out).tolist()
        return json.dumps({"predictions": preds}, allow_nan=False).encode()


def _column(series: Any) -> Any:
    values = series.to_numpy()
    if values.dtype.kind == "O":
        return values.astype(str).astype(object)
    return values


def _tensor_meta(spec: Any, i: int, unnamed: str) -> dict[str, Any]:
    from lakehub.singleuser.oip import DTYPES

    np_name = str(getattr(spec.type, "name", spec.type))
    datatype = next((k for k, v in DTYPES.items() if v == np_name), "BYTES")
    return {
        "name": spec.name or (unnamed if i == 0 and unnamed == "predict" else f"{unnamed}-{i}"),
        "datatype": datatype,
        "shape": list(spec.shape or [-1]),
    }


# HTTP -----------------------------------------------------------------------------------------
Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]  # status, type, body, headers
JSON = b"application/json"
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


def _json(status: int, doc: Any) -> Answer:
    return status, JSON, json.dumps(doc, separators=(",", ":")).encode(), []


def _error(status: int, message: str) -> Answer:
    return _json(status, {"error": message})


class App:
    def __init__(self, served: Served, key: bytes) -> None:
        self.served = served
        self.key = key
        self.name = served.name

    def handle(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> Answer:
        if self.key and not hmac.compare_digest(headers.get(KEY_HEADER, b""), self.key):
            return _error(403, "this replica answers LakeHub's gateway only")
        path = unquote(target.split(b"?", 1)[0].decode("latin-1"))
        parts = [p for p in path.split("/") if p]
        try:
            return self._route(method, parts, headers, body)
        except OIPError as err:
            return _error(err.status, str(err))
        except (ValueError, TypeError, KeyError, IndexError) as err:
            return _error(400, f"the model refused the input: {type(err).__name__}: {err}")
        except Exception as err:  # the model's own failure: the replica lives on
            if type(err).__name__ == "MlflowException":
                return _error(400, str(err))
            print(f"predict failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            return _error(500, f"the model failed: {type(err).__name__}: {err}")

    def _route(
        self, method: bytes, parts: list[str], headers: dict[bytes, bytes], body: bytes
    ) -> Answer:
        s = self.served
        if parts[:1] == ["v2"]:
            rest = parts[1:]
            if rest == ["health", "live"]:
                return _json(200, {"live": True})
            if rest == ["health", "ready"]:
                return _json(200, {"ready": True})
            if not rest:
                return _json(
                    200, {"name": "lakehub", "version": "2", "extensions": ["binary_tensor_data"]}
                )
            if rest[0] != "models" or len(rest) < 2:
                return _error(404, f"no such path: /{'/'.join(parts)}")
            if rest[1] != self.name:
                return _error(404, f"no model named {rest[1]!r} here (this is {self.name!r})")
            tail = rest[2:]
            if tail[:1] == ["versions"]:
                if len(tail) < 2 or tail[1] != s.version:
                    wanted = tail[1] if len(tail) > 1 else ""
                    return _error(404, f"model {self.name!r} has no version {wanted!r} here")
                tail = tail[2:]
            if not tail and method == b"GET":
                return _json(200, s.metadata())
            if tail == ["ready"] and method == b"GET":
                return _json(200, {"name": self.name, "ready": True})
            if tail == ["infer"]:
                if method != b"POST":
                    return _error(405, "infer takes POST")
                length = headers.get(BINARY_HEADER.encode())
                req = decode(body, int(length) if length and length.isdigit() else None)
                out, head_len = encode(self.name, s.version, s.infer(req), req)
                extra = (
                    []
                    if head_len is None
                    else [(b"Inference-Header-Content-Length", str(head_len).encode())]
                )
                ctype = JSON if head_len is None else b"application/octet-stream"
                return 200, ctype, out, extra
            return _error(404, f"no such path: /{'/'.join(parts)}")
        if parts == ["invocations"] and method == b"POST":
            given = headers.get(b"content-type", b"application/json").decode("latin-1")
            return 200, JSON, s.invocations(body, given), []
        if parts in (["ping"], ["health"]):
            return 200, JSON, b"{}", []
        if parts == ["lakehub", "example"]:
            return _json(200, s.example_request())
        return _error(404, f"no such path: /{'/'.join(parts)}")


class Connection(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._send(_error(413, "request head too large"), close=True)
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            try:
                method, target, _ = lines[0].split(b" ", 2)
            except ValueError:
                self._send(_error(400, "malformed request line"), close=True)
                return
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
            if b"chunked" in headers.get(b"transfer-encoding", b""):
                self._send(_error(400, "chunked bodies are not taken: send Content-Length"), True)
                return
            length = int(headers.get(b"content-length", b"0") or 0)
            if length > MAX_BODY:
                self._send(_error(413, f"bodies are limited to {MAX_BODY >> 20} MiB"), close=True)
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            close = headers.get(b"connection", b"").lower() == b"close"
            self._send(self.app.handle(method, target, headers, body), close)

    def _send(self, answer: Answer, close: bool) -> None:
        status, ctype, body, extra = answer
        head = [
            b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Unknown")),
            b"Content-Type: " + ctype,
            b"Content-Length: %d" % len(body),
            b"Connection: close" if close else b"Connection: keep-alive",
            *(k + b": " + v for k, v in extra),
        ]
        assert self.transport is not None
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lakehub.singleuser.serve")
    p.add_argument("--model", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    key = os.environ.pop("LAKEHUB_REPLICA_KEY", "").encode()
    served = Served(args.model, args.name, args.version)
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    app = App(served, key)
    server = loop.run_until_complete(
        loop.create_server(lambda: Connection(app), args.host, args.port, backlog=1024)
    )
    print(
        f"serving {args.name} version {args.version} on {args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    import signal

    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
