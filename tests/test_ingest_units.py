"""The log and the sinks on their own (no hub): recovery after a torn write, retries recognised
after a restart, every body format decoded, undecodable entries kept aside, parked batches kept
(and counted against the bound) across a restart."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehub.ingest.base import Batch, Entry, Fmt, LogFull, Stream
from lakehub.ingest.log import LogWriter, scan, seg_name
from lakehub.ingest.park import Park
from lakehub.ingest.sinks import PartlyRejected, RecordSink


def entry(n: int, chunk: str = "", stream: int = 1) -> Entry:
    data = b"".join(msgpack.packb([1700000000 + i, {"n": i}]) for i in range(n))
    return Entry(stream, 7, Fmt.MSGPACK_ENTRIES, time.time(), "t.x", data, chunk)


def test_a_torn_tail_is_cut_and_stored_chunks_are_recognised_after_a_restart(
        tmp_path: Path) -> None:  # fmt: skip
    log = LogWriter(tmp_path, 1 << 20, 1 << 30)
    log.open((0, 0))
    assert log.append(entry(3, "a")).result(10) is True
    assert log.append(entry(2, "b")).result(10) is True
    assert log.append(entry(2, "a")).result(10) is False  # a retry: acknowledged, not stored
    log.close()
    path = tmp_path / seg_name(1)
    good = path.stat().st_size
    with path.open("ab") as f:  # a crash in the middle of the next write
        f.write(b"LH\x01\x00\xff\xff\x00\x00garbage")
    again = LogWriter(tmp_path, 1 << 20, 1 << 30)
    again.open((0, 0))
    assert path.stat().st_size == good
    assert again.append(entry(3, "a")).result(10) is False
    assert again.append(entry(1, "c")).result(10) is True
    again.close()
    assert [e.chunk for _, e in scan(path)] == ["a", "b", "c"]


def test_the_bound_refuses_and_moving_frees_room(tmp_path: Path) -> None:
    log = LogWriter(tmp_path, 4096, 8192)
    log.open((0, 0))
    sent = 0
    with pytest.raises(LogFull):
        for i in range(100):
            log.append(entry(20, f"c{i}")).result(10)
            sent += 1
    assert 10 < sent < 100
    log.set_moved(log.segment, log.size)  # all of it reached the lake
    assert log.held() == 0
    assert log.append(entry(20, "more")).result(10) is True
    assert len(log.segments()) == 1 and list(tmp_path.glob("ids-*.msgpack"))
    log.close()


class Lake:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.objects[key] = body


def test_every_format_becomes_rows_and_bad_entries_go_aside() -> None:
    now = time.time()
    rec = [
        entry(2),
        Entry(1, 7, Fmt.GZIP_ENTRIES, now, "t.gz", gzip.compress(entry(1).data)),
        Entry(1, 7, Fmt.MSGPACK_ARRAY, now, "t.fw", msgpack.packb([[1700000000, {"n": 5}]])),
        Entry(1, 7, Fmt.NDJSON, now, "t.nd", b'{"n": 6}\n{"n": 7, "extra": [1, 2]}\n'),
        Entry(1, 7, Fmt.JSON, now, "t.js", b'[{"n": 8}]'),
        Entry(1, 7, Fmt.CSV, now, "t.csv", b"n,word\n9,nine\n"),
        Entry(1, 7, Fmt.MSGPACK_RECORDS, now, "t.mp",
              msgpack.packb({"n": 10}) + msgpack.packb([[1700000000, {}], {"n": 11}])),
        Entry(1, 7, Fmt.MSGPACK_ENTRIES, now, "t.bad", msgpack.packb([1, "not a map"])),
    ]  # fmt: skip
    lake = Lake()
    stream = Stream(1, "s", "o", "records", "b", "streams/s", ("t.*",))
    with pytest.raises(PartlyRejected) as err:
        RecordSink(lake).write(Batch(stream, "000000000001-000000000000", rec))  # type: ignore[arg-type]
    assert err.value.records == 10
    bad = [k for k in lake.objects if "/_rejected/" in k]
    assert len(bad) == 1 and lake.objects[bad[0]] == rec[-1].data
    tables = [pq.read_table(pa.BufferReader(v)) for k, v in lake.objects.items() if k not in bad]
    rows: list[dict[str, Any]] = [r for t in tables for r in t.to_pylist()]
    assert sorted(str(r["n"]) for r in rows) == sorted(map(str, [0, 1, 0, 5, 6, 7, 8, 9, 10, 11]))
    assert {r["_tag"] for r in rows} == {"t.x", "t.gz", "t.fw", "t.nd", "t.js", "t.csv", "t.mp"}
    assert all(k.startswith("streams/s/year=") for k in lake.objects if k not in bad)


def test_parked_batches_count_against_the_bound_and_survive_a_restart(tmp_path: Path) -> None:
    log = LogWriter(tmp_path, 1 << 20, 1 << 30)
    log.open((0, 0))
    park = Park(tmp_path / "parked", log)
    park.open((0, 0), {})
    first, second, other = [entry(3, stream=5)], [entry(2, stream=5)], [entry(1, stream=6)]
    park.put(5, "000000000001-000000000000", first, "NoSuchBucket")
    park.put(5, "000000000001-000000000100", second, "")
    park.put(6, "000000000001-000000000200", other, "AccessDenied")
    sizes = [p.stat().st_size for p in (tmp_path / "parked").glob("*.log")]
    assert len(sizes) == 3 and log.held() == sum(sizes)
    assert log.parked(5) == (sum(sizes) - log.parked(6)[0], "NoSuchBucket")
    assert park.due() == []  # the first try waits for the backoff
    log.close()
    # after a crash: stream 5's first batch had landed, stream 6's was never committed
    again = LogWriter(tmp_path, 1 << 20, 1 << 30)
    again.open((1, 150))
    park = Park(tmp_path / "parked", again)
    park.open((1, 150), {5: (1, 0)})
    due = park.due()
    assert [(sid, p.key) for sid, p in due] == [(5, "000000000001-000000000100")]
    assert park.read(due[0][1]) == second and not park.has(6)
    assert again.held() == again.parked(5)[0] == due[0][1].size
    park.landed(due[0][1])
    assert again.held() == 0 and not list((tmp_path / "parked").glob("*"))
    again.close()
