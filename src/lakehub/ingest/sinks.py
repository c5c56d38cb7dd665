"""Sinks: a stream's batch from the log into the lake.

Records become Parquet under ``<prefix>/year=Y/month=M/day=D/part-<batch key>.parquet``, with
``_time`` (the event time, UTC) and ``_tag`` beside the record's own fields. A field whose
values do not share one type in a batch is stored as JSON text. Raw streams get one object
``<prefix>/part-<batch key>.bin`` per batch: reading the objects in key order gives the bytes
in the order they were acknowledged. An entry that cannot be decoded (it was acknowledged on a
cheap check) is kept as it came under ``<prefix>/_rejected/`` and counted as an error: never
dropped, never blocking the rest.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgpack

from lakehub.ingest.base import Batch, Entry, Fmt, Sink, parse_event_time

log = logging.getLogger("lakehub.ingest.sinks")
Pair = tuple[float, str, dict[str, Any]]  # event time, tag, record


def _ext(code: int, data: bytes) -> Any:
    return msgpack.ExtType(code, data)


def decode(e: Entry) -> list[tuple[float, dict[str, Any]]]:
    """The (event time, record) pairs of one entry; raises ValueError if it cannot."""
    try:
        if e.fmt in (Fmt.MSGPACK_ENTRIES, Fmt.GZIP_ENTRIES, Fmt.MSGPACK_ARRAY):
            data = gzip.decompress(e.data) if e.fmt == Fmt.GZIP_ENTRIES else e.data
            u = msgpack.Unpacker(raw=False, ext_hook=_ext, strict_map_key=False,
                                 unicode_errors="replace")  # fmt: skip
            u.feed(data)
            items = next(u) if e.fmt == Fmt.MSGPACK_ARRAY else list(u)
            out = []
            for item in items:
                t, rec = item
                if not isinstance(rec, dict):
                    raise ValueError("a record is not a map")
                out.append((parse_event_time(t), rec))
            return out
        if e.fmt == Fmt.MSGPACK_RECORDS:
            u = msgpack.Unpacker(raw=False, ext_hook=_ext, strict_map_key=False)
            u.feed(e.data)
            out = []
            for obj in u:
                if isinstance(obj, dict):
                    out.append((e.received_at, obj))
                else:
                    t, rec = obj
                    t = t[0] if isinstance(t, list) else t
                    out.append((parse_event_time(t), rec))
            return out
        if e.fmt == Fmt.JSON:
            doc = json.loads(e.data)
            return [(e.received_at, d) for d in (doc if isinstance(doc, list) else [doc])]
        if e.fmt == Fmt.NDJSON:
            lines = [ln for ln in e.data.split(b"\n") if ln.strip()]
            return [(e.received_at, d) for d in json.loads(b"[" + b",".join(lines) + b"]")]
        if e.fmt == Fmt.CSV:
            rows = csv.DictReader(io.StringIO(e.data.decode("utf-8")))
            return [(e.received_at, dict(r)) for r in rows]
    except (ValueError, TypeError, KeyError, EOFError, OSError, StopIteration) as err:
        raise ValueError(f"{e.fmt.name}: {err}") from None
    raise ValueError(f"{e.fmt.name} entries do not hold records")


def _column(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        text = [None if v is None else v if isinstance(v, str) else json.dumps(v, default=repr)
                for v in values]  # fmt: skip
        return pa.array(text, pa.string())


def table(pairs: list[tuple[float, str, dict[str, Any]]]) -> Any:
    import pyarrow as pa

    names: dict[str, None] = {}
    for _, _, rec in pairs:
        for k in rec:
            names.setdefault(str(k), None)
    cols: dict[str, Any] = {
        "_time": pa.array([int(t * 1e6) for t, _, _ in pairs], pa.timestamp("us", tz="UTC")),
        "_tag": pa.array([tag for _, tag, _ in pairs], pa.string()),
    }
    for name in names:
        if name in cols:
            continue
        cols[name] = _column([rec.get(name) for _, _, rec in pairs])
    return pa.table(cols)


class S3Writer:
    """Puts bytes with the lake administrator's client (the writer acts for every stream)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body)


class RecordSink(Sink):
    def __init__(self, s3: S3Writer) -> None:
        self.s3 = s3

    def write(self, batch: Batch) -> tuple[int, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        st = batch.stream
        days: dict[tuple[int, int, int], list[Pair]] = defaultdict(list)
        rejected = []
        for e in batch.entries:
            try:
                pairs = decode(e)
            except ValueError as err:
                rejected.append((e, str(err)))
                continue
            for t, rec in pairs:
                d = datetime.fromtimestamp(t, UTC)
                days[(d.year, d.month, d.day)].append((t, e.tag, rec))
        records = nbytes = 0
        for (y, m, day), rows in sorted(days.items()):
            out = pa.BufferOutputStream()
            pq.write_table(table(rows), out, compression="zstd")
            body = out.getvalue().to_pybytes()
            key = f"{st.prefix}/year={y}/month={m}/day={day}/part-{batch.key}.parquet"
            self.s3.put(st.bucket, key.lstrip("/"), body)
            records += len(rows)
            nbytes += len(body)
        for i, (e, why) in enumerate(rejected):
            log.warning("stream %s: entry kept under _rejected/ (%s)", st.name, why)
            self.s3.put(st.bucket, f"{st.prefix}/_rejected/part-{batch.key}-{i}.bin".lstrip("/"),
                        e.data)  # fmt: skip
        if rejected:
            raise PartlyRejected(records, nbytes, len(rejected), rejected[0][1])
        return records, nbytes


class PartlyRejected(Exception):
    """Written, but some entries went to ``_rejected/``: the counts are still right."""

    def __init__(self, records: int, nbytes: int, count: int, why: str) -> None:
        super().__init__(f"{count} entries could not be decoded and were kept under "
                         f"_rejected/: {why}")  # fmt: skip
        self.records, self.nbytes = records, nbytes


class RawSink(Sink):
    def __init__(self, s3: S3Writer) -> None:
        self.s3 = s3

    def write(self, batch: Batch) -> tuple[int, int]:
        parts = []
        for e in batch.entries:
            if e.fmt == Fmt.RAW:
                parts.append(e.data)
                continue
            try:  # records sent to a raw stream: their "data"/"message" field, else JSON lines
                for _, rec in decode(e):
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
