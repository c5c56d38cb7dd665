"""The Open Inference Protocol v2 (KServe's ``required_api.md``) on the wire: request bodies to
numpy arrays and results back to response bodies, with Triton's binary tensor extension.

Rules:

- A tensor's ``data`` is flat or nested (row-major), of exactly ``prod(shape)`` elements of its
  ``datatype``; anything else is an :class:`OIPError` (a 400 naming the tensor).
- Binary tensors: the request's ``Inference-Header-Content-Length`` header gives the JSON
  header's length; the bytes after it are the inputs whose ``parameters.binary_data_size`` is
  set, in order (little-endian, row-major; ``BYTES`` elements each with a 4-byte length).
  Outputs go back binary when asked per output (``parameters.binary_data``) or for all
  (``parameters.binary_data_output`` on the request).
- Needs numpy, imported on first use (this module is imported by a replica's process, in the
  model's environment).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

DTYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
BINARY_HEADER = "inference-header-content-length"


class OIPError(Exception):
    """A request the protocol refuses: ``status`` 400 unless said otherwise."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    id: str | None
    inputs: dict[str, Any]  # name -> numpy array of the given shape
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_outputs: set[str] | None = None  # None: none; empty: all
    wanted: list[str] = field(default_factory=list)  # outputs asked for, by name (empty: all)


def datatype_of(array: Any) -> str:
    kind = array.dtype.kind
    if kind in "OUS":
        return "BYTES"
    for name, np_name in DTYPES.items():
        if array.dtype.name == np_name:
            return name
    if kind == "M":  # datetimes travel as text
        return "BYTES"
    raise OIPError(f"the model answered with an unsupported type {array.dtype}", 500)


def decode(body: bytes, header_length: int | None) -> Request:
    raw, rest = (body, b"") if header_length is None else _split(body, header_length)
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise OIPError(f"the body is not JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise OIPError("a request needs 'inputs': a list of tensors")
    inputs: dict[str, Any] = {}
    offset = 0
    for t in doc["inputs"]:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise OIPError("every input needs a 'name'")
        name = t["name"]
        shape, datatype = t.get("shape"), t.get("datatype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise OIPError(f"input {name!r}: 'shape' must be a list of sizes")
        if not isinstance(datatype, str) or datatype not in DTYPES:
            raise OIPError(f"input {name!r}: unknown datatype {datatype!r}")
        count = math.prod(shape)
        size = _parameters(t, f"input {name!r}").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(rest):
                raise OIPError(f"input {name!r}: binary_data_size is past the body's end")
            array = _from_binary(rest[offset : offset + size], datatype, count, name)
            offset += size
        else:
            array = _from_json(t.get("data"), datatype, count, name)
        inputs[name] = array.reshape(shape)
    params = _parameters(doc, "the request")
    outs = doc.get("outputs") or []
    if not isinstance(outs, list) or not all(isinstance(o, dict) for o in outs):
        raise OIPError("'outputs' must be a list of objects")
    binary: set[str] | None = set() if params.get("binary_data_output") else None
    for o in outs:
        if _parameters(o, f"output {o.get('name')!r}").get("binary_data"):
            binary = (binary or set()) | {str(o.get("name"))}
    rid = doc.get("id")
    return Request(
        None if rid is None else str(rid),
        inputs,
        params,
        binary,
        [str(o.get("name")) for o in outs],
    )


def encode(
    model: str, version: str, outputs: dict[str, Any], req: Request
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    if req.wanted:
        unknown = [n for n in req.wanted if n not in outputs]
        if unknown:
            raise OIPError(f"the model has no output {unknown[0]!r} (it has: {', '.join(outputs)})")
        outputs = {n: outputs[n] for n in req.wanted}
    tensors, blobs = [], []
    for name, array in outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if req.binary_outputs is not None and (
            not req.binary_outputs or name in req.binary_outputs
        ):
            blob = _to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _to_json(array, datatype)
        tensors.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if req.id is not None:
        doc["id"] = req.id
    head = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def _parameters(doc: dict[str, Any], what: str) -> dict[str, Any]:
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise OIPError(f"{what}: 'parameters' must be an object")
    return params


def _split(body: bytes, length: int) -> tuple[bytes, bytes]:
    if length < 0 or length > len(body):
        raise OIPError("Inference-Header-Content-Length is past the body's end")
    return body[:length], body[length:]


def _from_json(data: Any, datatype: str, count: int, name: str) -> Any:
    import numpy as np

    if data is None:
        raise OIPError(f"input {name!r} has no 'data'")
    flat = _flatten(data) if isinstance(data, list) else [data]
    if len(flat) != count:
        raise OIPError(f"input {name!r}: {len(flat)} values for a shape of {count}")
    if datatype == "BYTES":
        return np.array([v if isinstance(v, str) else str(v) for v in flat], dtype=object)
    try:
        return np.asarray(flat, dtype=DTYPES[datatype])
    except (TypeError, ValueError, OverflowError):
        raise OIPError(f"input {name!r}: the values are not all {datatype}") from None


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _from_binary(blob: bytes, datatype: str, count: int, name: str) -> Any:
    import numpy as np

    if datatype != "BYTES":
        dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
        if len(blob) != count * dtype.itemsize:
            raise OIPError(f"input {name!r}: {len(blob)} bytes for {count} {datatype} values")
        return np.frombuffer(blob, dtype=dtype)
    items, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise OIPError(f"input {name!r}: a BYTES element's length is cut off")
        (n,) = struct.unpack_from("<I", blob, pos)
        if pos + 4 + n > len(blob):
            raise OIPError(f"input {name!r}: a BYTES element is cut off")
        items.append(blob[pos + 4 : pos + 4 + n].decode("utf-8", "replace"))
        pos += 4 + n
    if len(items) != count:
        raise OIPError(f"input {name!r}: {len(items)} values for a shape of {count}")
    return np.array(items, dtype=object)


def _to_json(array: Any, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    if datatype.startswith("FP"):
        values = flat.tolist()
        if not all(math.isfinite(v) for v in values):  # JSON has no NaN: null, as OIP servers do
            return [v if math.isfinite(v) else None for v in values]
        return list(values)
    return list(flat.tolist())


def _to_binary(array: Any, datatype: str) -> bytes:
    if datatype != "BYTES":
        return bytes(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    parts = []
    for v in array.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(struct.pack("<I", len(b)) + b)
    return b"".join(parts)
