"""A record stream's settled schema: one type per field across every batch of the stream.

Each batch is conformed to the schema settled by the batches before it, and may move it on:

- a new field is added; a field seen only as null so far takes the first type it gets;
- the same type stays; nulls fit any type;
- integers and floats make a float field (integers in a float field become floats); an integer
  field whose values went beyond 2**53 becomes text instead, so no digit is lost;
- a field that holds booleans or numbers keeps that kind: a value of another kind (``"three"``
  in a number field, an object, ``true`` in a number field) is kept beside it, as text, in the
  field ``<field>__text`` (null in the field itself), and counted as the batch's error (see
  :func:`misfits`); in a new field, its first value's kind decides;
- objects merge their fields (by name) and lists their items, by the same rules;
- anything else makes the field text: strings stay as they are, other values become JSON.

Earlier files keep the types they were written with: a reader given the settled schema casts
them (an int column read as float or as text, an object missing a field read with it null).
Where no such cast exists (an object or list field, or bytes, getting values of another kind),
the field keeps its type and the batch's values of it go, as text, to the field
``<field>__text`` (and on, ``<field>__text__text``...), so nothing is dropped.

The result depends only on the schema before the batch and the batch itself: writing the same
batch again after a crash gives the same files. The schema is kept as JSON (see :func:`dumps`).
"""

from __future__ import annotations

import json
import re
from typing import Any

FIXED = ("_time", "_tag")
TEXT_SUFFIX = "__text"
EXACT = 2**53  # integers up to this are exact as floats
_WIDE = b"lakehub.wide"  # field metadata: an integer field held values beyond EXACT


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _kind(v: Any) -> str | None:
    """What a value is, for the rule that a field keeps its kind (None: a null fits anything)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return "str" if isinstance(v, str) else "other"


_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def _number(v: str) -> int | float | None:
    """The number a text is written as, when it reads back the same (``"9"``, ``"2.5"``; not
    ``"007"`` or ``"1e3"``): CSV sends numbers as text."""
    if _INT.fullmatch(v):
        return int(v)
    try:
        f = float(v)
    except ValueError:
        return None
    return f if repr(f) == v else None


def _settled_kind(t: Any) -> str | None:
    name = str(t)
    return "bool" if name == "bool" else "number" if name in ("int64", "uint64", "double") else None


def misfits(values: list[Any], settled: Any) -> tuple[list[Any], list[Any]] | None:
    """A field's values split into (those of the field's kind, the others), None where a value
    went to the other list: the field's kind is its settled type's (booleans or numbers), else
    its first value's; in a number field, a text that reads back as the same number is that
    number. None when nothing changes (the field holds text or structures, or all fit)."""
    kind = _settled_kind(settled.type) if settled is not None else None
    if settled is None:
        kind = next((k for k in map(_kind, values) if k is not None), None)
    if kind not in ("bool", "number"):
        return None
    keep: list[Any] = []
    moved: list[Any] = []
    for v in values:
        if kind == "number" and isinstance(v, str) and (n := _number(v)) is not None:
            v = n
        fits = _kind(v) in (None, kind)
        keep.append(v if fits else None)
        moved.append(None if fits else v)
    return (keep, moved) if any(v is not None for v in moved) or keep != values else None


def fits(t: Any, settled: Any) -> bool:
    """Whether :func:`misfits` leaves alone a column that Arrow converted whole to type ``t``:
    one type means one kind, so only a settled number or boolean field can refuse it (text,
    objects, or the other of the two)."""
    kind = _settled_kind(settled.type) if settled is not None else None
    if kind is None:  # a new field takes its first value's kind, which all of ``t`` share;
        return True  # a settled text or structure field splits nothing
    return str(t) == "null" or _settled_kind(t) == kind


def text(values: list[Any]) -> Any:
    """Values as one text column: strings as they are, anything else as JSON."""
    pa = _pa()
    out = [
        None if v is None else v if isinstance(v, str) else json.dumps(v, default=repr)
        for v in values
    ]
    return pa.array(out, pa.string())


def _scalar(name: str) -> Any:
    pa = _pa()
    known = (pa.null(), pa.bool_(), pa.int64(), pa.uint64(), pa.float64(), pa.string(), pa.binary())
    return {str(t): t for t in known}.get(name)


def _supported(t: Any) -> bool:
    pa = _pa()
    if pa.types.is_struct(t):
        return t.num_fields > 0 and all(_supported(f.type) for f in t)
    if pa.types.is_list(t):
        return _supported(t.value_type)
    return _scalar(str(t)) == t


def _castable_to_text(t: Any) -> bool:
    return str(t) in ("null", "bool", "int64", "uint64", "double", "string")


def _join(t: Any, b: Any) -> Any:
    """The type holding both, that columns of either can be cast to; None if there is none."""
    pa = _pa()
    if t == b or pa.types.is_null(b):
        return t
    if pa.types.is_null(t):
        return b
    nums = ("int64", "uint64", "double")
    if str(t) in nums and str(b) in nums and "double" in (str(t), str(b)):
        return pa.float64()
    if pa.types.is_struct(t) and pa.types.is_struct(b):
        fields = []
        for f in t:
            i = b.get_field_index(f.name)
            joined = f.type if i < 0 else _join(f.type, b.field(i).type)
            if joined is None:
                return None
            fields.append(pa.field(f.name, joined))
        fields += [f for f in b if t.get_field_index(f.name) < 0]
        return pa.struct(fields)
    if pa.types.is_list(t) and pa.types.is_list(b):
        item = _join(t.value_type, b.value_type)
        return None if item is None else pa.list_(item)
    return pa.string() if _castable_to_text(t) else None


def _wide(col: Any) -> bool:
    """An integer column holding a value a float would not keep exactly."""
    import pyarrow.compute as pc

    if str(col.type) == "uint64":  # only values past int64's range make one
        return True
    if str(col.type) != "int64" or col.null_count == len(col):
        return False
    bounds = pc.min_max(col)
    return max(-bounds["min"].as_py(), bounds["max"].as_py()) > EXACT


def _fit(field: Any, col: Any) -> tuple[Any, Any] | None:
    """(the settled field, the column as that type) for a settled field and a batch column."""
    pa = _pa()
    wide = field is not None and (field.metadata or {}).get(_WIDE) == b"1"
    t = None if field is None else field.type
    target = col.type if t is None else _join(t, col.type)
    if target is not None and wide and str(target) == "double":
        target = pa.string()  # its integers would not survive as floats
    if target is None:
        return None
    try:
        if str(target) == "string" and str(col.type) != "string":
            out = col.cast(target) if str(col.type) == "null" else text(col.to_pylist())
        else:
            out = col.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. 2**60 into a float field
        if not _castable_to_text(t):
            return None
        target, out = pa.string(), text(col.to_pylist())
    wide = pa.types.is_integer(target) and (wide or _wide(out))
    meta = {_WIDE: b"1"} if wide else None
    return pa.field(field.name if field else "", target, metadata=meta), out


def conform(table: Any, settled: Any) -> tuple[Any, Any]:
    """The batch's table conformed to the settled schema (None: none yet), and the schema after
    it (the settled fields first, in their order, then the batch's new ones)."""
    pa = _pa()
    fields = {f.name: f for f in (settled or [])}
    cols: dict[str, Any] = {}
    for name in table.column_names:
        col = table[name].combine_chunks()
        if name in FIXED:
            cols[name] = col
            continue
        if not _supported(col.type):
            col = text(col.to_pylist())
        while True:  # a name taken in this batch (a side field) also moves on
            fit = None if name in cols else _fit(fields.get(name), col)
            if fit is not None:
                break
            name, col = name + TEXT_SUFFIX, text(col.to_pylist())
        field, cols[name] = fit
        fields[name] = field.with_name(name)
    return pa.table(cols), pa.schema(list(fields.values()))


def file_schema(settled: Any) -> Any:
    """What a reader takes a stream's files for: ``_time``, ``_tag``, then the settled fields."""
    pa = _pa()
    fixed = [
        pa.field("_time", pa.timestamp("us", tz="UTC")),
        pa.field("_tag", pa.dictionary(pa.int32(), pa.string())),
    ]
    return pa.schema(fixed + [f.remove_metadata() for f in settled or []])


def catalog_columns(settled: Any) -> str:
    """The catalog's ``[{"name", "type"}, ...]`` of a stream's dataset: as inferred from files
    written with the settled schema (its day folders included)."""
    return json.dumps(
        [{"name": f.name, "type": str(f.type)} for f in file_schema(settled)]
        + [{"name": k, "type": "int32"} for k in ("year", "month", "day")]
    )


def _enc(t: Any) -> Any:
    pa = _pa()
    if pa.types.is_struct(t):
        return {"struct": [{"name": f.name, "type": _enc(f.type)} for f in t]}
    if pa.types.is_list(t):
        return {"list": _enc(t.value_type)}
    return str(t)


def _dec(doc: Any) -> Any:
    pa = _pa()
    if isinstance(doc, dict) and "struct" in doc:
        return pa.struct([pa.field(f["name"], _dec(f["type"])) for f in doc["struct"]])
    if isinstance(doc, dict) and "list" in doc:
        return pa.list_(_dec(doc["list"]))
    t = _scalar(str(doc))
    if t is None:
        raise ValueError(f"not a settled type: {doc!r}")
    return t


def dumps(schema: Any) -> str:
    """``[{"name", "type", "wide"?}, ...]`` with types as ``int64``, ``{"list": T}``,
    ``{"struct": [{"name", "type"}, ...]}``."""
    out = []
    for f in schema:
        item: dict[str, Any] = {"name": f.name, "type": _enc(f.type)}
        if (f.metadata or {}).get(_WIDE) == b"1":
            item["wide"] = True
        out.append(item)
    return json.dumps(out)


def loads(doc: str | None) -> Any:
    if not doc:
        return None
    pa = _pa()
    return pa.schema(
        [
            pa.field(f["name"], _dec(f["type"]), metadata={_WIDE: b"1"} if f.get("wide") else None)
            for f in json.loads(doc)
        ]
    )
