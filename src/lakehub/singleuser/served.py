"""A model endpoint's model as a replica serves it: an MLflow model loaded from its folder
(scikit-learn models as their estimator, everything else as a pyfunc model), its signature as
Open Inference Protocol tensors, and predict from tensors or from MLflow's scoring formats.

A scikit-learn model that MLflow pickled (cloudpickle or pickle, no code paths) is read without
importing MLflow (its ``MLmodel`` is YAML, its signature and input example JSON): a replica of it
starts in about half the time. Used by :mod:`lakehub.singleuser.serve`; imports MLflow, numpy
and pandas only when called."""

from __future__ import annotations

import json
import warnings
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from lakehub.singleuser.oip import OIPError

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
        import yaml

        self.name, self.version = name, version
        meta = yaml.safe_load((Path(path) / "MLmodel").read_text()) or {}
        pyfunc = (meta.get("flavors") or {}).get("python_function") or {}
        loader = str(pyfunc.get("loader_module") or "")
        signature = meta.get("signature") or {}
        # each side: columns as (name, type), or tensors as OIP metadata, or neither (unsigned)
        self.columns, self.tensors = _side(signature.get("inputs"), "input")
        out_columns, out_tensors = _side(signature.get("outputs"), "predict")
        self.output_name = "predict"  # a result that is one array or Series, unless signed
        if out_columns is not None and len(out_columns) == 1:
            self.output_name = out_columns[0][0]
        self.outputs_meta = out_tensors or [
            {"name": n, "datatype": MLFLOW_TO_OIP.get(t, "BYTES"), "shape": [-1]}
            for n, t in out_columns or ()
        ]
        self.native: Any = None
        self.pyfunc: Any = None
        self.example: Any = None
        if loader == "mlflow.sklearn":
            self.native = _unpickled(path, meta)
            if self.native is None:
                self.native = _sklearn(path)
            self.predict_native = getattr(self.native, pyfunc.get("predict_fn") or "predict")
            # given arrays, a model fitted on a DataFrame warns on every call
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            self.example = _example(path, meta.get("saved_input_example_info") or {})
        else:
            import mlflow.pyfunc
            from mlflow.models import Model

            self.pyfunc = mlflow.pyfunc.load_model(path)
            try:
                self.example = Model.load(path).load_input_example(path)
            except Exception:  # an example that does not load only costs the warm-up
                self.example = None
        custom = not loader or loader.startswith("mlflow.pyfunc")  # a PythonModel, from code too
        self.platform = f"mlflow-{'pyfunc' if custom else loader.rsplit('.', 1)[-1]}"
        self.fast = (
            self.native is not None
            and bool(self.columns)
            and all(t in NUMERIC for _, t in self.columns or ())
        )
        if self.example is not None:
            self.predict_frame(self._frame(self.example))  # warm, and fail now if it cannot

    # metadata ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        inputs = self.tensors or [
            {"name": n, "datatype": MLFLOW_TO_OIP.get(t, "BYTES"), "shape": [-1]}
            for n, t in self.columns or ()
        ]
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": inputs,
            "outputs": self.outputs_meta,
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
        if self.tensors:
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
            return self.predict_native(data)
        return self.pyfunc.predict(data)

    def outputs(self, result: Any) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        if isinstance(result, pd.DataFrame):
            return {str(c): _column(result[c]) for c in result.columns}
        if isinstance(result, pd.Series):
            return {self.output_name: _column(result)}
        if isinstance(result, dict):
            return {str(k): np.asarray(v) for k, v in result.items()}
        return {self.output_name: np.asarray(result)}

    # batching ---------------------------------------------------------------------------------
    def batch_key(self, data: Any) -> Hashable | None:
        """Inputs (as :meth:`model_input` makes them) with the same key concatenate by rows:
        the fast path's float matrices, DataFrames of the same columns and types; None for
        the rest (tensor dicts, empty inputs), which are predicted alone."""
        import numpy as np
        import pandas as pd

        if self.fast and isinstance(data, np.ndarray) and data.ndim == 2 and len(data):
            return ("matrix", data.shape[1])
        if isinstance(data, pd.DataFrame) and len(data):
            return ("frame", *((str(c), str(t)) for c, t in data.dtypes.items()))
        return None

    def predict_together(self, parts: list[Any]) -> list[dict[str, Any]] | None:
        """Inputs of one batch key predicted as one call: each one's outputs, or None when the
        outputs do not split back by rows (not one row per input row)."""
        import numpy as np
        import pandas as pd

        if isinstance(parts[0], pd.DataFrame):
            data = pd.concat(parts, ignore_index=True)
        else:
            data = np.vstack(parts)
        outputs = self.outputs(self.predict_frame(data))
        if not all(a.ndim >= 1 and len(a) == len(data) for a in outputs.values()):
            return None
        ends = np.cumsum([len(p) for p in parts]).tolist()
        return [
            {k: v[start:end] for k, v in outputs.items()}
            for start, end in zip([0, *ends[:-1]], ends, strict=True)
        ]

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
                records = isinstance(raw, list) and bool(raw) and isinstance(raw[0], dict)
                if self.columns is not None and isinstance(raw, dict):  # columns
                    data = pd.DataFrame({k: np.asarray(v).reshape(-1) for k, v in raw.items()})
                elif self.columns is not None and records:
                    data = pd.DataFrame.from_records(raw)
                elif isinstance(raw, dict):
                    data = {k: np.asarray(v) for k, v in raw.items()}
                else:
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


def _side(raw: Any, unnamed: str) -> tuple[list[tuple[str, str]] | None, list[dict[str, Any]]]:
    """One side of a signature from its JSON in ``MLmodel``: its columns as (name, type) for a
    column-based schema (None otherwise), its tensors as OIP metadata for a tensor-based one."""
    from lakehub.singleuser.oip import DTYPES

    specs = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(specs, list) or not specs:
        return None, []
    if all(isinstance(s, dict) and s.get("type") == "tensor" for s in specs):
        tensors = []
        for i, spec in enumerate(specs):
            tensor = spec.get("tensor-spec") or {}
            dtype = str(tensor.get("dtype"))
            default = unnamed if i == 0 and unnamed == "predict" else f"{unnamed}-{i}"
            tensors.append(
                {
                    "name": spec.get("name") or default,
                    "datatype": next((k for k, v in DTYPES.items() if v == dtype), "BYTES"),
                    "shape": list(tensor.get("shape") or [-1]),
                }
            )
        return None, tensors
    columns = []
    for i, spec in enumerate(specs):
        kind = spec.get("type") if isinstance(spec, dict) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        default = unnamed if i == 0 and unnamed == "predict" else str(i)
        columns.append((str(name) if name else default, str(kind)))
    return columns, []


def _unpickled(path: str, meta: dict[str, Any]) -> Any:
    """A scikit-learn model MLflow pickled without code paths, read without MLflow; None for
    the rest (skops, code paths), which MLflow loads."""
    flavors = meta.get("flavors") or {}
    sk = flavors.get("sklearn") or {}
    fmt = sk.get("serialization_format")
    if fmt not in ("cloudpickle", "pickle") or sk.get("code") or not sk.get("pickled_model"):
        return None
    if (flavors.get("python_function") or {}).get("code"):
        return None
    with open(Path(path) / sk["pickled_model"], "rb") as f:
        if fmt == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(f)
        import pickle

        return pickle.load(f)  # noqa: S301 (the owner's own model, loaded as the owner)


def _sklearn(path: str) -> Any:
    import mlflow.sklearn

    return mlflow.sklearn.load_model(path)


def _example(path: str, info: dict[str, Any]) -> Any:
    """The input example MLflow saved beside the model (a DataFrame, an array, or a dict of
    arrays); None when there is none or it is another kind (it only costs the warm-up)."""
    import numpy as np
    import pandas as pd

    name = info.get("artifact_path")
    if not name:
        return None
    try:
        doc = json.loads((Path(path) / name).read_text())
        if info.get("type") == "dataframe" and info.get("pandas_orient", "split") == "split":
            return pd.DataFrame(doc["data"], columns=doc.get("columns"))
        if info.get("type") == "ndarray":
            raw = doc["inputs"] if isinstance(doc, dict) and "inputs" in doc else doc
            if isinstance(raw, dict):
                return {k: np.asarray(v) for k, v in raw.items()}
            return np.asarray(raw)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
