"""The log and the sinks on their own (no hub): recovery after a torn write, retries recognised
after a restart, every body format decoded, undecodable entries kept aside, parked batches kept
(and counted against the bound) across a restart."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import msgpack
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyarrow.fs import LocalFileSystem

from lakehub.server.ingest.base import Batch, Entry, Fmt, LogFull, Stream
from lakehub.server.ingest.encode import table
from lakehub.server.ingest.log import LogWriter, scan, seg_name
from lakehub.server.ingest.park import Park
from lakehub.server.ingest.schema import conform, dumps, loads
from lakehub.server.ingest.sinks import LakeWriteError, PartlyRejected, RecordSink
from lakehub.server.ingest.tags import overlap
from lakehub.tables import open_dataset


def entry(n: int, chunk: str = "", stream: int = 1) -> Entry:
    data = b"".join(msgpack.packb([1700000000 + i, {"n": i}]) for i in range(n))
    return Entry(stream, 7, Fmt.MSGPACK_ENTRIES, time.time(), "t.x", data, chunk)


def test_a_torn_tail_is_cut_and_stored_chunks_are_recognised_after_a_restart(
    tmp_path: Path,
) -> None:
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


@pytest.fixture
def sink() -> Iterator[Callable[[Any], RecordSink]]:
    """A record sink over a lake; its encoding process ended after the test."""
    made: list[RecordSink] = []

    def make(lake: Any) -> RecordSink:
        made.append(RecordSink(lake))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_every_format_becomes_rows_and_bad_entries_go_aside(
    sink: Callable[[Any], RecordSink],
) -> None:
    now = time.time()
    rec = [
        entry(2),
        Entry(1, 7, Fmt.GZIP_ENTRIES, now, "t.gz", gzip.compress(entry(1).data)),
        Entry(1, 7, Fmt.MSGPACK_ARRAY, now, "t.fw", msgpack.packb([[1700000000, {"n": 5}]])),
        Entry(1, 7, Fmt.NDJSON, now, "t.nd", b'{"n": 6}\n{"n": 7, "extra": [1, 2]}\n'),
        Entry(1, 7, Fmt.JSON, now, "t.js", b'[{"n": 8}]'),
        Entry(1, 7, Fmt.CSV, now, "t.csv", b"n,word\n9,nine\n"),
        Entry(
            1,
            7,
            Fmt.MSGPACK_RECORDS,
            now,
            "t.mp",
            msgpack.packb({"n": 10}) + msgpack.packb([[1700000000, {}], {"n": 11}]),
        ),
        Entry(1, 7, Fmt.MSGPACK_ENTRIES, now, "t.bad", msgpack.packb([1, "not a map"])),
    ]
    lake = Lake()
    stream = Stream(1, "s", "o", "records", "b", "streams/s", ("t.*",))
    with pytest.raises(PartlyRejected) as err:
        sink(lake).write(Batch(stream, "000000000001-000000000000", rec))
    assert err.value.records == 10
    bad = [k for k in lake.objects if "/_rejected/" in k]
    assert len(bad) == 1 and lake.objects[bad[0]] == rec[-1].data
    tables = [pq.read_table(pa.BufferReader(v)) for k, v in lake.objects.items() if k not in bad]
    rows: list[dict[str, Any]] = [r for t in tables for r in t.to_pylist()]
    assert sorted(str(r["n"]) for r in rows) == sorted(map(str, [0, 1, 0, 5, 6, 7, 8, 9, 10, 11]))
    assert {r["_tag"] for r in rows} == {"t.x", "t.gz", "t.fw", "t.nd", "t.js", "t.csv", "t.mp"}
    assert all(
        k.startswith("streams/s/year=")
        for k in lake.objects
        if k not in bad and k != "streams/s/_common_metadata"
    )


def test_a_killed_encoder_fails_its_batch_whole_and_the_next_try_writes_it(
    sink: Callable[[Any], RecordSink],
) -> None:
    """The records are encoded in a process of their own: killed, the batch is refused whole
    (nothing put, tried again as when the lake is down), and a new process takes the retry."""
    lake, stream = Lake(), Stream(1, "s", "o", "records", "b", "streams/s", ("t.*",))
    records = sink(lake)
    records.write(Batch(stream, "000000000000-000000000000", [entry(1)]))
    lake.objects.clear()
    (encoder,) = multiprocessing.active_children()
    os.kill(encoder.pid, signal.SIGKILL)
    encoder.join(10)
    batch = Batch(stream, "000000000001-000000000000", [entry(3)])
    with pytest.raises(LakeWriteError) as err:
        records.write(batch)
    assert err.value.unreachable and lake.objects == {}
    written = records.write(batch)
    files = {k.rsplit("/", 1)[1]: v for k, v in lake.objects.items()}
    assert sorted(files) == ["_common_metadata", "part-000000000001-000000000000.parquet"]
    assert written == (3, len(files["part-000000000001-000000000000.parquet"]))


def test_the_encoder_ends_with_a_killed_receivers_process() -> None:
    code = (
        "import multiprocessing, os, time\n"
        "from lakehub.server.ingest.encode import Encoder\n"
        "Encoder().start()\n"
        "while not multiprocessing.active_children(): time.sleep(0.01)\n"
        "print(multiprocessing.active_children()[0].pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    child = int(done.stdout)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


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


def test_entries_that_are_parked_count_once_toward_their_owners_share(tmp_path: Path) -> None:
    """Parking moves entries' bytes from the log's count to the parked count in one step: the
    share a failing owner may hold is never reached by counting the same bytes twice."""
    log = LogWriter(tmp_path, 1 << 20, 1 << 30)
    log.open((0, 0))
    park = Park(tmp_path / "parked", log)
    park.open((0, 0), {})
    first, later = entry(3, stream=5), entry(2, stream=5)
    assert log.append(first).result(10) and log.append(later).result(10)
    assert log.in_log(5) == len(first.data) + len(later.data)
    key = "000000000001-000000000000"
    park.put(5, key, [first], "NoSuchBucket")
    parked = log.parked(5)[0]
    assert parked > len(first.data) and log.in_log(5) == len(later.data)
    park.put(5, key, [first], "NoSuchBucket")  # the batch's commit failed: parked again
    assert log.parked(5)[0] == parked and log.in_log(5) == len(later.data)
    log.close()


def test_batches_whose_types_drift_read_as_one_table_and_lose_nothing(
    tmp_path: Path, sink: Callable[[Any], RecordSink]
) -> None:
    lake = Lake()
    records = sink(lake)
    stream = Stream(1, "s", "o", "records", "b", "streams/s", ("t.*",))
    t0 = 1_700_000_000.0

    def write(i: int, recs: list[dict[str, Any]], before: str | None) -> str | None:
        e = Entry(1, 7, Fmt.JSON, t0 + i, "t.x", json.dumps(recs).encode())
        batch = Batch(stream, f"000000000001-{i:012d}", [e], before)
        try:
            records.write(batch)
        except PartlyRejected as err:  # written; the message is the stream's error
            notes.append(str(err))
        return batch.schema

    notes: list[str] = []

    s1 = write(1, [{"n": 1, "f": 1, "o": {"a": 1}, "z": None}], None)
    s2 = write(2, [{"n": "x", "f": 2.5, "o": {"b": "y"}, "new": True, "z": 4}], s1)
    s3 = write(3, [{"n": 7, "f": 3, "o": "flat", "z": 5}], s2)
    assert s3 is not None and s3 != s2 != s1
    third = next(v for k, v in lake.objects.items() if k.endswith("-000000000003.parquet"))
    assert write(3, [{"n": 7, "f": 3, "o": "flat", "z": 5}], s2) == s3  # a redo after a crash
    assert next(v for k, v in lake.objects.items() if k.endswith("3.parquet")) == third
    for key, body in lake.objects.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(body)
    data = open_dataset(
        LocalFileSystem(), str(tmp_path), "streams/s", "parquet", ["year", "month", "day"]
    )
    got = data.to_table().sort_by("_time").to_pydict()
    # a number field keeps its type: text in it is kept beside it, and said
    assert got["n"] == [1, None, 7] and str(data.schema.field("n").type) == "int64"
    assert got["n__text"] == [None, "x", None]
    flat = "values not of their field's type were kept beside it: 1 in 'o' (e.g. 'flat'), kept in "
    assert notes == [
        "values not of their field's type were kept beside it: 1 in 'n' (e.g. 'x'), "
        "kept in 'n__text'",
        flat + "'o__text'",
        flat + "'o__text'",  # its redo (after a crash, before its checkpoint) says the same
    ]
    assert got["f"] == [1.0, 2.5, 3.0] and str(data.schema.field("f").type) == "double"
    assert got["new"] == [None, True, None]  # a later field: null before it came
    assert got["z"] == [None, 4, 5]  # null only, then int
    assert got["o"] == [{"a": 1, "b": None}, {"a": None, "b": "y"}, None]
    assert got["o__text"] == [None, None, "flat"]  # no cast from an object: kept beside it
    assert got["year"] == [2023] * 3
    assert duckdb.sql("select sum(f), count(new), max(n) from data").fetchall() == [(6.5, 1, 7)]


@pytest.mark.parametrize(
    ("batches", "field", "values"),
    [
        ([[2**60], [1.5]], "v", ["1152921504606846976", "1.5"]),  # floats would round it: text
        ([[1.5], [2**60]], "v", ["1.5", "1152921504606846976"]),
        ([[1], [2**64]], "v", ["1", "18446744073709551616"]),
        ([[1], [2**63]], "v", ["1", "9223372036854775808"]),
        ([[[1, 2]], [[2.5]]], "v", [[1.0, 2.0], [2.5]]),
        ([[b"\x00\xff"], ["text"]], "v__text", [None, "text"]),
        ([[True], [{"k": 1}]], "v__text", [None, '{"k": 1}']),  # a boolean field stays one
        ([[1], ["2", "two", 3]], "v", [1, 2, None, 3]),  # text that reads as a number is one
        ([[1], ["two"]], "v__text", [None, "two"]),
        ([["007"], [7]], "v", ["007", "7"]),  # a text field takes anything, as text
        ([[1, "one", True]], "v__text", [None, "one", "true"]),  # a new field: its first kind
    ],
)
def test_conforming_keeps_every_value(
    batches: list[list[Any]], field: str, values: list[Any]
) -> None:
    settled, t0 = None, 1_700_000_000.0
    files = []
    for values_in in batches:
        t, settled = conform(
            table(
                [t0] * len(values_in),
                ["t.x"] * len(values_in),
                [{"v": v} for v in values_in],
                settled,
            ),
            settled,
        )
        assert loads(dumps(settled)).equals(settled, check_metadata=True)
        files.append(t)
    assert settled is not None
    want = settled.field(field).type  # each file read as a reader given the schema reads it
    got = [
        v
        for t in files
        for v in (
            t[field].cast(want).to_pylist() if field in t.column_names else [None] * t.num_rows
        )
    ]
    assert got == values


def test_counts_come_from_the_durable_log_and_are_taken_again_after_a_crash(tmp_path: Path) -> None:
    log = LogWriter(tmp_path, 2048, 1 << 30)  # small segments: counting crosses them
    log.open((0, 0))
    for i in range(30):
        assert log.append(entry(3, f"a{i}", stream=1 + i % 2)).result(10) is True
    assert log.append(entry(3, "a0", stream=1)).result(10) is False  # a retry: not counted
    counts, at = log.take_counts()
    assert {sid: c[1] for sid, c in counts.items()} == {1: 15, 2: 15}
    for i in range(30, 40):
        log.append(entry(3, f"a{i}", stream=1)).result(10)
    untaken, _ = log.take_counts()  # taken, never committed: the process dies here
    assert untaken[1][1] == 10
    log.close()
    again = LogWriter(tmp_path, 2048, 1 << 30)
    again.open((0, 0), at)  # counted up to ``at`` before the crash: the rest is counted again
    recount, _ = again.take_counts()
    assert {sid: c[1] for sid, c in recount.items()} == {1: 10}
    again.append(entry(1, "b", stream=2)).result(10)
    more, _ = again.take_counts()
    assert {sid: c[1] for sid, c in more.items()} == {2: 1}
    again.close()
    fresh = LogWriter(tmp_path, 2048, 1 << 30)
    fresh.open((0, 0), None)  # no position recorded (an older hub): nothing counted twice
    assert fresh.take_counts()[0] == {}
    fresh.close()


@pytest.mark.parametrize(
    "p, q, meet",
    [
        ("*", "a.b", True),
        ("a.*", "b.*", False),
        ("a.*", "*.x", True),
        ("a?c", "abc", True),
        ("a[bc]d", "aed", False),
        ("a[!b]", "ab", False),
        ("a[!b]", "a[a-c]", True),
        ("app.*", "app", False),
        ("app*", "app", True),
        ("x.[0-9]", "x.a", False),
        ("*a*", "*b*", True),
    ],
)
def test_two_tag_patterns_overlap_when_some_tag_matches_both(p: str, q: str, meet: bool) -> None:
    assert overlap(p, q) is meet and overlap(q, p) is meet


_SCALARS = [
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.sampled_from(["7", "2.5", "007", "two"]),
    st.binary(max_size=2),
]
_ANY = st.recursive(
    st.one_of(st.none(), *_SCALARS),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from("xy"), inner),
    max_leaves=4,
)


@st.composite
def _records(draw: Any) -> list[dict[str, Any]]:
    """Records whose fields mostly keep one kind (so Arrow takes them at once), sometimes not."""
    n = draw(st.integers(1, 6))
    cols = {}
    for key in draw(st.lists(st.sampled_from(["a", "b", "c", "_tag"]), max_size=3, unique=True)):
        kind = draw(st.sampled_from([*_SCALARS, _ANY]))
        cols[key] = draw(st.lists(st.none() | kind, min_size=n, max_size=n))
    present = draw(
        st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=n, max_size=n)
    )
    return [
        {k: v[i] for j, (k, v) in enumerate(cols.items()) if present[i][j] or v[i] is not None}
        for i in range(n)
    ]


@settings(max_examples=300, deadline=None)
@given(before=_records(), batch=_records())
def test_records_converted_at_once_give_the_table_a_column_at_a_time_gives(
    before: list[dict[str, Any]], batch: list[dict[str, Any]]
) -> None:
    def make(recs: list[dict[str, Any]], settled: Any, at_once: bool) -> tuple[Any, Any]:
        moved: dict[str, Any] = {}
        t0 = [1_700_000_000.0] * len(recs)
        built = table(t0, ["t"] * len(recs), recs, settled, moved, at_once=at_once)
        return built, moved

    settled = conform(make(before, None, False)[0], None)[1]
    for known in (None, settled):
        fast, fast_moved = make(batch, known, True)
        slow, slow_moved = make(batch, known, False)
        assert fast.equals(slow, check_metadata=True), (fast.schema, slow.schema)
        assert repr(fast_moved) == repr(slow_moved)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)  # beyond 64 bits: the scan refuses, the full parse takes
    | st.floats(allow_nan=True, allow_infinity=True)  # NaN: the same
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
# what a sender gets wrong: control characters, broken escapes and UTF-8, stray separators
_SLIPS = [
    *(b"\x00", b"\x1f", b"\\", b"\\u", b"\\ud800", b'"', b"{", b"}", b"[", b"]", b",", b":"),
    *(b"\n", b"\n\n", b" ", b"\xff", b"\xc0\x80", b"\xef\xbb\xbf", b"NaN", b"1e999", b"00"),
]
_HOW = ("before", "over", "in a string")


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(_JSON, max_size=4),
    slips=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(_SLIPS), st.sampled_from(_HOW)),
        max_size=3,
    ),
    ndjson=st.booleans(),
)
def test_the_door_counts_what_the_writer_reads_and_takes_nothing_it_cannot(
    values: list[Any], slips: list[tuple[int, bytes, str]], ndjson: bool
) -> None:
    """The HTTP receiver checks a JSON or NDJSON body without building its records; whatever it
    takes, the lake writer's parse reads as that many records (nothing acknowledged fails
    later), and a body of objects is taken whole."""
    from lakehub.server.ingest.base import Refused
    from lakehub.server.ingest.encode import decode
    from lakehub.server.ingest.http import check

    fmt = Fmt.NDJSON if ndjson else Fmt.JSON
    lines = [json.dumps(v, ensure_ascii=False).encode() for v in values]
    body = bytearray(b"\n".join(lines) if ndjson else b"[" + b",".join(lines) + b"]")
    objects = all(type(v) is dict for v in values) and bool(values)
    for at, slip, how in slips:
        quotes = [i + 1 for i, c in enumerate(body) if c == ord('"')]
        if how == "in a string" and quotes:
            at = quotes[at % len(quotes)]
        at %= len(body) + 1
        body[at : at + (len(slip) if how == "over" else 0)] = slip
    try:
        taken = check(fmt, bytes(body))
    except Refused:
        assert slips or not objects  # a body of objects, untouched, is never refused
        return
    _, records = decode(Entry(1, 1, fmt, 0.0, "t", bytes(body), ""))
    assert taken == len(records)
    if objects and not slips:
        assert taken == len(values)
