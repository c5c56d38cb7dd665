"""Sinks: a stream's batch from the log into the lake.

Records become Parquet under ``<prefix>/year=Y/month=M/day=D/part-<batch key>.parquet``, with
``_time`` (the event time, UTC) and ``_tag`` beside the record's own fields. A field whose
values do not share one type in a batch is stored as JSON text; across batches, every batch is
conformed to the stream's settled schema (:mod:`lakehub.server.ingest.schema`), which is published
as ``<prefix>/_common_metadata`` (a Parquet footer) before any file that needs it, so readers see
every field with one type (:func:`lakehub.tables.open_dataset`). Raw streams get one object
``<prefix>/part-<batch key>.bin`` per batch: reading the objects in key order gives the bytes
in the order they were acknowledged. An entry that cannot be decoded (it was acknowledged on a
cheap check) is kept as it came under ``<prefix>/_rejected/`` and counted as an error: never
dropped, never blocking the rest.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import msgpack

from lakehub.server.config import Settings, resolve
from lakehub.server.ingest import schema
from lakehub.server.ingest.base import (
    DEFAULT_MAX_MESSAGE,
    Batch,
    Entry,
    Fmt,
    Refused,
    Sink,
    gunzip,
    json_loads,
    parse_event_time,
)
from lakehub.server.lake.base import Lake
from lakehub.tables import SCHEMA_FILE

log = logging.getLogger("lakehub.server.ingest.sinks")


def _ext(code: int, data: bytes) -> Any:
    return msgpack.ExtType(code, data)


def decode(e: Entry, limit: int = DEFAULT_MAX_MESSAGE) -> tuple[list[float], list[dict[str, Any]]]:
    """The event times and records of one entry; raises ValueError if it cannot, or if its
    compressed entries inflate beyond ``limit`` bytes (its source's message limit)."""
    try:
        if e.fmt in (Fmt.MSGPACK_ENTRIES, Fmt.GZIP_ENTRIES, Fmt.MSGPACK_ARRAY):
            data = gunzip(e.data, limit) if e.fmt == Fmt.GZIP_ENTRIES else e.data
            u = msgpack.Unpacker(
                raw=False,
                ext_hook=_ext,
                strict_map_key=False,
                unicode_errors="replace",
                max_buffer_size=len(data) + 1,
            )
            u.feed(data)
            items = next(u) if e.fmt == Fmt.MSGPACK_ARRAY else list(u)
            if not items:
                return [], []
            pairs = zip(*items, strict=True)  # every entry a [time, record] pair
            times, maps = pairs
            return _times(times), _maps(maps)
        if e.fmt == Fmt.MSGPACK_RECORDS:
            u = msgpack.Unpacker(raw=False, ext_hook=_ext, strict_map_key=False)
            u.feed(e.data)
            out_t: list[float] = []
            out_r: list[Any] = []
            for obj in u:
                if isinstance(obj, dict):
                    out_t.append(e.received_at)
                    out_r.append(obj)
                else:
                    t, rec = obj
                    out_t.append(parse_event_time(t[0] if isinstance(t, list) else t))
                    out_r.append(rec)
            return out_t, _maps(out_r)
        if e.fmt == Fmt.JSON:
            doc = json_loads(e.data)
            recs = doc if isinstance(doc, list) else [doc]
        elif e.fmt == Fmt.NDJSON:
            lines = [ln for ln in e.data.split(b"\n") if ln.strip()]
            recs = json_loads(b"[" + b",".join(lines) + b"]")
        elif e.fmt == Fmt.CSV:
            recs = [dict(r) for r in csv.DictReader(io.StringIO(e.data.decode("utf-8")))]
        else:
            raise ValueError(f"{e.fmt.name} entries do not hold records")
        return [e.received_at] * len(recs), _maps(recs)
    except (ValueError, TypeError, KeyError, EOFError, OSError, StopIteration, Refused) as err:
        raise ValueError(f"{e.fmt.name}: {err}") from None


def _times(times: Any) -> list[float]:
    if set(map(type, times)) <= {int, float}:
        return list(times)
    return [parse_event_time(t) for t in times]


def _maps(recs: Any) -> list[dict[str, Any]]:
    if set(map(type, recs)) != {dict}:
        raise ValueError("a record is not a map")
    return list(recs)


def _column(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return schema.text(values)


def _at_once(recs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Every field's column from one conversion of all the records in Arrow's own code (the
    same inference as a column at a time, several times faster); {} where Arrow cannot take
    them at once (a field with values of two kinds, a key that is not text, ...)."""
    import pyarrow as pa

    try:
        whole = pa.array(recs)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return {}
    if not pa.types.is_struct(whole.type) or [f.name for f in whole.type] != names:
        return {}
    return dict(zip(names, whole.flatten(), strict=True))


def table(
    times: list[float],
    tags: list[str],
    recs: list[dict[str, Any]],
    settled: Any = None,
    moved: dict[str, tuple[str, int, Any]] | None = None,
    at_once: bool = True,
) -> Any:
    """One Arrow table: ``_time`` (UTC), ``_tag``, then every field seen, in first-seen order.
    A value not of its field's kind (``settled``: the stream's schema so far) goes to the field
    ``<field>__text`` beside it; ``moved`` gets ``{field: (side field, count, first value)}``.
    ``at_once``: convert the records in one go where that gives the same table (False: a
    column at a time, the rule itself; a test holds the two equal)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(pc.floor(pc.multiply(pa.array(times, pa.float64()), 1e6)), pa.int64())
    cols: dict[str, Any] = {
        "_time": micros.cast(pa.timestamp("us", tz="UTC")),
        "_tag": pa.array(tags, pa.string()).dictionary_encode(),
    }
    names = [str(n) for n in dict.fromkeys(chain.from_iterable(recs))]
    fields = {f.name: f for f in (settled or [])}
    ready = _at_once(recs, names) if at_once else {}
    for name in names:
        if name in cols:
            continue
        col = ready.get(name)
        if col is not None and schema.fits(col.type, fields.get(name)):
            cols[name] = col
            continue
        values = [r.get(name) for r in recs]
        split = None if name in schema.FIXED else schema.misfits(values, fields.get(name))
        if split is None:
            cols[name] = _column(values)
            continue
        cols[name] = _column(split[0])
        out = [v for v in split[1] if v is not None]
        if not out:  # numbers written as text, read as numbers
            continue
        side = name + schema.TEXT_SUFFIX
        while side in names or side in cols:  # a field of the records' own by that name
            side += schema.TEXT_SUFFIX
        cols[side] = schema.text(split[1])
        if moved is not None:
            moved[name] = (side, len(out), out[0])
    return pa.table(cols)


def misfit_note(moved: dict[str, tuple[str, int, Any]]) -> str:
    """One sentence for the stream's errors: which fields got values of another kind."""
    parts = []
    for name, (side, n, first) in moved.items():
        shown = first if isinstance(first, str) else json.dumps(first, default=repr)
        shown = shown if len(shown) <= 40 else shown[:39] + "…"
        parts.append(f"{n} in {name!r} (e.g. {shown!r}), kept in {side!r}")
    return "values not of their field's type were kept beside it: " + "; ".join(parts)


class LakeWriteError(RuntimeError):
    """The lake refused or did not answer: the batch is tried again later. ``unreachable``: no
    answer at all (the lake is down for every stream), rather than a refusal of this write."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class S3Writer:
    """Puts bytes as the lake's administrator (the writer acts for every stream)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def put(self, bucket: str, key: str, body: bytes) -> None:
        try:
            self.lake.put(bucket, key, body)
        except Exception as err:
            from botocore.exceptions import ClientError

            raise LakeWriteError(
                f"s3://{bucket}/{key}: {err}", unreachable=not isinstance(err, ClientError)
            ) from err

    def probe(self) -> None:
        """Raises unless the lake answers (a failed write then concerns its bucket only)."""
        self.lake.buckets()


def sinks(settings: Settings, writer: S3Writer, limit: Callable[[int], int]) -> dict[str, Sink]:
    """The sink of each kind of stream, as ``ingest_sinks`` names them."""
    return {
        kind: resolve("ingestion sink", name, Sink)(writer, limit)
        for kind, name in settings.ingest_sinks.items()
    }


class RecordSink(Sink):
    def write(self, batch: Batch) -> tuple[int, int]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        st = batch.stream
        times: list[float] = []
        tags: list[str] = []
        recs: list[dict[str, Any]] = []
        rejected = []
        decoded: list[Entry] = []
        for e in batch.entries:
            try:
                t, r = decode(e, self.limit(e.source_id))
            except ValueError as err:
                rejected.append((e, str(err)))
                continue
            times += t
            recs += r
            tags += [e.tag] * len(r)
            decoded.append(e)
        records = nbytes = 0
        moved: dict[str, tuple[str, int, Any]] = {}
        if recs:
            try:
                before = schema.loads(batch.schema)
                built = table(times, tags, recs, before, moved)
                whole, settled = schema.conform(built, before)
                for name in set(whole.column_names) - set(built.column_names):
                    out = [v for v in whole[name].to_pylist() if v is not None]
                    if out:  # conform kept a whole column beside its field
                        moved[name.removesuffix(schema.TEXT_SUFFIX)] = (name, len(out), out[0])
            except Exception as err:  # records no table takes: keep them as they came
                rejected += [(e, f"no table: {err}") for e in decoded]
                recs, moved = [], {}
        if recs and schema.dumps(settled) != batch.schema:
            # readers learn of a new field or type before any file holds it
            out = pa.BufferOutputStream()
            pq.write_metadata(schema.file_schema(settled), out)
            self.s3.put(
                st.bucket, f"{st.prefix}/{SCHEMA_FILE}".lstrip("/"), out.getvalue().to_pybytes()
            )
            batch.schema = schema.dumps(settled)
        if recs:
            days = pc.divide(pc.cast(whole["_time"], pa.int64()), 86_400_000_000)
            for day in sorted(pc.unique(days).to_pylist()):
                part = (
                    whole
                    if pc.min(days).as_py() == pc.max(days).as_py()
                    else whole.filter(pc.equal(days, day))
                )
                d = datetime.fromtimestamp(day * 86400, UTC)
                out = pa.BufferOutputStream()
                pq.write_table(part, out, compression="zstd")
                body = out.getvalue().to_pybytes()
                key = f"{st.prefix}/year={d.year}/month={d.month}/day={d.day}/part-{batch.key}"
                self.s3.put(st.bucket, f"{key}.parquet".lstrip("/"), body)
                records += part.num_rows
                nbytes += len(body)
        for i, (e, why) in enumerate(rejected):
            log.warning("stream %s: entry kept under _rejected/ (%s)", st.name, why)
            self.s3.put(
                st.bucket, f"{st.prefix}/_rejected/part-{batch.key}-{i}.bin".lstrip("/"), e.data
            )
        notes = [misfit_note(moved)] if moved else []
        if rejected:
            notes.append(
                f"{len(rejected)} entries could not be decoded and were kept under _rejected/: "
                f"{rejected[0][1]}"
            )
        if notes:
            raise PartlyRejected(records, nbytes, "; ".join(notes))
        return records, nbytes


class PartlyRejected(Exception):
    """Written, but not all as it came (entries kept under ``_rejected/``, values kept beside
    their field): the counts are still right, and the message is the stream's error."""

    def __init__(self, records: int, nbytes: int, message: str) -> None:
        super().__init__(message)
        self.records, self.nbytes = records, nbytes


class RawSink(Sink):
    def write(self, batch: Batch) -> tuple[int, int]:
        parts = []
        for e in batch.entries:
            if e.fmt == Fmt.RAW:
                parts.append(e.data)
                continue
            try:  # records sent to a raw stream: their "data"/"message" field, else JSON lines
                for rec in decode(e, self.limit(e.source_id))[1]:
                    value = rec.get("data", rec.get("message"))
                    if isinstance(value, bytes):
                        parts.append(value)
                    elif isinstance(value, str):
                        parts.append(value.encode())
                    else:
                        parts.append(json.dumps(rec, default=repr).encode() + b"\n")
            except ValueError:
                parts.append(e.data)
        body = b"".join(parts)
        st = batch.stream
        if body:
            self.s3.put(st.bucket, f"{st.prefix}/part-{batch.key}.bin".lstrip("/"), body)
        return len(batch.entries), len(body)
