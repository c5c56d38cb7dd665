"""A model endpoint's model as a replica serves it: an MLflow model loaded from its folder
(scikit-learn models as their estimator, everything else as a pyfunc model), its signature as
Open Inference Protocol tensors, and predict from tensors or from MLflow's scoring formats.
Used by :mod:`lakehub.singleuser.serve`; imports MLflow, numpy and pandas only when called."""

from __future__ import annotations

import json
import warnings
from collections.abc import Hashable
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
        custom = not loader or loader.startswith("mlflow.pyfunc")  # a PythonModel, from code too
        self.platform = f"mlflow-{'pyfunc' if custom else loader.rsplit('.', 1)[-1]}"
        self.columns: list[tuple[str, str]] | None = None
        inputs = self.signature.inputs if self.signature else None
        if inputs is not None and not inputs.is_tensor_spec():
            self.columns = [(c.name or str(i), c.type.name) for i, c in enumerate(inputs.inputs)]
        out = self.signature.outputs if self.signature else None
        self.output_name = "predict"  # a result that is one array or Series, unless signed
        if out is not None and not out.is_tensor_spec() and len(out.inputs) == 1:
            self.output_name = out.inputs[0].name or "predict"
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
                if len(cols) == 1:
                    cols = [(self.output_name, cols[0][1])]
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


def _tensor_meta(spec: Any, i: int, unnamed: str) -> dict[str, Any]:
    from lakehub.singleuser.oip import DTYPES

    np_name = str(getattr(spec.type, "name", spec.type))
    datatype = next((k for k, v in DTYPES.items() if v == np_name), "BYTES")
    return {
        "name": spec.name or (unnamed if i == 0 and unnamed == "predict" else f"{unnamed}-{i}"),
        "datatype": datatype,
        "shape": list(spec.shape or [-1]),
    }
