"""A record stream's batch made into files: decoded, conformed to the stream's settled schema,
written as Parquet (one file per day of its event times). Pure work on the CPU, done by
:class:`Encoder` in a process of its own, so the lake writer never holds the receivers'
interpreter; the sinks (:mod:`lakehub.server.ingest.sinks`) put what it returns.

A field whose values do not share one type in a batch is stored as JSON text; a value not of its
field's kind is kept beside it (see :mod:`lakehub.server.ingest.schema`). An entry that cannot be
decoded (it was acknowledged on a cheap check) is returned as rejected: the sink keeps it as it
came.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import msgpack

from lakehub.server.ingest import schema
from lakehub.server.ingest.base import (
    DEFAULT_MAX_MESSAGE,
    Entry,
    Fmt,
    Refused,
    gunzip,
    json_loads,
    parse_event_time,
)


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
    if set(map(type, recs)) - {dict}:  # none at all is no records (a JSON body ``[]``)
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


@dataclass
class Encoded:
    """A batch of a record stream as files, in the order the sink puts them."""

    schema: str | None  # the stream's settled schema after the batch (JSON)
    schema_file: bytes | None = None  # its Parquet footer, when the batch moved it on
    files: list[tuple[str, bytes, int]] = field(default_factory=list)  # (path, body, rows)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (entry's index, why)
    moved: dict[str, tuple[str, int, Any]] = field(default_factory=dict)  # see table()


def encode_records(
    entries: list[Entry], settled: str | None, limits: dict[int, int], key: str
) -> Encoded:
    """The entries' records as Parquet files named ``year=Y/month=M/day=D/part-<key>.parquet``,
    conformed to ``settled``; ``limits``: each source's message limit (inflating included)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    times: list[float] = []
    tags: list[str] = []
    recs: list[dict[str, Any]] = []
    out = Encoded(settled)
    decoded: list[int] = []
    for i, e in enumerate(entries):
        try:
            t, r = decode(e, limits.get(e.source_id, DEFAULT_MAX_MESSAGE))
        except ValueError as err:
            out.rejected.append((i, str(err)))
            continue
        times += t
        recs += r
        tags += [e.tag] * len(r)
        decoded.append(i)
    if not recs:
        return out
    try:
        before = schema.loads(settled)
        built = table(times, tags, recs, before, out.moved)
        whole, after = schema.conform(built, before)
        for name in set(whole.column_names) - set(built.column_names):
            kept = [v for v in whole[name].to_pylist() if v is not None]
            if kept:  # conform kept a whole column beside its field
                out.moved[name.removesuffix(schema.TEXT_SUFFIX)] = (name, len(kept), kept[0])
    except Exception as err:  # records no table takes: keep them as they came
        out.rejected += [(i, f"no table: {err}") for i in decoded]
        out.moved.clear()
        return out
    if schema.dumps(after) != settled:  # readers learn of a new field before a file holds it
        buf = pa.BufferOutputStream()
        pq.write_metadata(schema.file_schema(after), buf)
        out.schema, out.schema_file = schema.dumps(after), buf.getvalue().to_pybytes()
    days = pc.divide(pc.cast(whole["_time"], pa.int64()), 86_400_000_000)
    one_day = pc.min(days).as_py() == pc.max(days).as_py()
    for day in sorted(pc.unique(days).to_pylist()):
        part = whole if one_day else whole.filter(pc.equal(days, day))
        d = datetime.fromtimestamp(day * 86400, UTC)
        buf = pa.BufferOutputStream()
        pq.write_table(part, buf, compression="zstd")
        path = f"year={d.year}/month={d.month}/day={d.day}/part-{key}.parquet"
        out.files.append((path, buf.getvalue().to_pybytes(), part.num_rows))
    return out


class EncoderDied(RuntimeError):
    """The encoding process ended (killed, out of memory): the batch is tried again."""


def _begin(parent: int) -> None:
    """The encoding process's start: it ends with the receivers' process, even a killed one,
    and loads Parquet's writer before the first batch waits on it. It makes and drops millions
    of small objects (a dict per record): with the default thresholds the collector runs every
    700 of them and its full passes walk every object imported, about a tenth of its time
    (bench/ingest.py)."""
    import gc

    from lakehub.server.supervisor import die_with

    die_with(parent)
    import pyarrow.parquet  # noqa: F401

    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class Encoder:
    """Runs :func:`encode_records` in a process of its own, started at the first batch (a hub
    that ingests nothing never starts it) and again after it died. Spawned, not forked: the
    receivers' process has threads. One process: batches are encoded one at a time."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    1, mp_context=ctx, initializer=_begin, initargs=(os.getpid(),)
                )
                self._pool.submit(int)  # the process starts now, not with a batch waiting
            return self._pool

    def run(
        self, entries: list[Entry], settled: str | None, limits: dict[int, int], key: str
    ) -> Encoded:
        pool = self.start()
        try:
            return pool.submit(encode_records, entries, settled, limits, key).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False)
            raise EncoderDied("the process that encodes batches ended; trying again") from None

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
