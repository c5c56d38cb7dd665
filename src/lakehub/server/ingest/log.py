"""The local append-only log: entries are acknowledged once fsynced here, and moved to the lake.

Layout: ``<ingest_dir>/log/seg-<n>.log`` files of framed entries (magic, format, length, CRC32,
then the entry). One writer thread owns the files: receivers hand it entries from any number of
connections, it writes everything queued with one ``write`` and one ``fdatasync`` (group commit)
and then resolves each entry's future. Only then may a receiver acknowledge.

After a crash the newest segment is scanned and cut at the first torn or corrupt entry (an entry
that was torn was never acknowledged). Chunk ids of every entry still on disk, and of segments
deleted within ``dedupe_seconds`` (kept in ``ids-<n>.msgpack``), are remembered, so a client's
retry of a chunk that was already stored is acknowledged without storing it twice.

The bound (``max_held``) counts the log not yet moved and what is parked for streams whose sink
failed (see ``park.py``: ``set_parked``).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import msgpack

from lakehub.server.ingest.base import Entry, Fmt, LogFull, Refused

log = logging.getLogger("lakehub.server.ingest.log")

FRAME = struct.Struct("<2sBxII")  # magic, fmt, length of the body, crc32 of the body
BODY = struct.Struct("<IIdHB")  # stream, source, received_at, tag length, chunk length
MAGIC = b"LH"
Key = tuple[int, str]


def encode(e: Entry) -> bytes:
    tag, chunk = e.tag.encode(), e.chunk.encode()
    body = b"".join(
        (
            BODY.pack(e.stream_id, e.source_id, e.received_at, len(tag), len(chunk)),
            tag,
            chunk,
            e.data,
        )
    )
    return FRAME.pack(MAGIC, int(e.fmt), len(body), zlib.crc32(body)) + body


def decode_body(fmt: int, body: bytes) -> Entry:
    stream, source, at, tlen, clen = BODY.unpack_from(body)
    p = BODY.size
    tag = body[p : p + tlen].decode()
    chunk = body[p + tlen : p + tlen + clen].decode()
    return Entry(stream, source, Fmt(fmt), at, tag, body[p + tlen + clen :], chunk)


def seg_name(n: int) -> str:
    return f"seg-{n:012d}.log"


def fsync_dir(path: Path) -> None:
    """Make the names in a folder durable (a created, renamed or removed file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogWriter:
    def __init__(
        self, folder: Path, segment_bytes: int, max_held: int, dedupe_seconds: int = 3600
    ) -> None:
        self.dir = folder
        self.segment_bytes = segment_bytes
        self.max_held = max_held
        self.dedupe_seconds = dedupe_seconds
        self._lock = threading.Condition()
        self._queue: list[tuple[Entry, Future[bool]]] = []
        self._pending: dict[Key, Future[bool]] = {}
        self._durable: dict[Key, float] = {}  # chunk key -> when stored
        self._seg_keys: dict[int, list[tuple[int, str, float]]] = {}
        self._queued_bytes = 0
        self._sizes: dict[int, int] = {}  # segment -> bytes (the current one: see ``size``)
        self._stop = False
        self._fd = -1
        self.segment = 0
        self.size = 0  # durable bytes of the current segment
        self.moved: tuple[int, int] = (0, 0)
        self.on_durable: list[threading.Event] = []
        self._thread: threading.Thread | None = None
        self.broken = ""
        self._parked: dict[int, tuple[int, str]] = {}  # stream -> (bytes parked, why)
        self._in_log: dict[int, int] = {}  # stream -> bytes of its entries not moved yet
        # what became durable since the streams' counters last took it: stream -> [bytes,
        # entries, newest received_at], and the log position it reaches (see ``take_counts``)
        self._counts: dict[int, list[float]] = {}
        self._counted: tuple[int, int] = (0, 0)

    # lifecycle ---------------------------------------------------------------------------
    def open(self, moved: tuple[int, int], counted: tuple[int, int] | None = None) -> None:
        """Recover what is on disk, then start the writer thread. ``counted``: the position
        the streams' counters were taken up to (None: everything on disk was counted)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.moved = moved
        segs = self.segments()
        for n in segs:
            keys = []
            end = 0
            for pos, entry in scan(self.dir / seg_name(n), verify=(n == segs[-1])):
                if (n, end) >= moved:
                    self._count(entry.stream_id, len(entry.data))
                if counted is not None and (n, end) >= counted:
                    self._tally(entry)
                end = pos
                if entry.chunk:
                    keys.append((entry.source_id, entry.chunk, entry.received_at))
            self._seg_keys[n] = keys
            if n == segs[-1]:
                path = self.dir / seg_name(n)
                if path.stat().st_size != end:
                    log.warning(
                        "cut %s at %d: %d bytes of a torn entry were never acknowledged",
                        path.name,
                        end,
                        path.stat().st_size - end,
                    )
                    os.truncate(path, end)
        now = time.time()
        for ids in sorted(self.dir.glob("ids-*.msgpack")):
            entries = msgpack.unpackb(ids.read_bytes())
            if all(now - at > self.dedupe_seconds for _, _, at in entries):
                ids.unlink()
                continue
            for src, chunk, at in entries:
                self._durable[(src, chunk)] = at
        for keys in self._seg_keys.values():
            for src, chunk, at in keys:
                self._durable[(src, chunk)] = at
        self.segment = segs[-1] if segs else max(1, moved[0])
        path = self.dir / seg_name(self.segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fsync(self._fd)  # whatever survived in the page cache is on disk from now on
        self.size = os.fstat(self._fd).st_size
        self._counted = (self.segment, self.size)
        fsync_dir(self.dir)
        self._seg_keys.setdefault(self.segment, [])
        self._sizes = {n: _size(self.dir / seg_name(n)) for n in self.segments()}
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread:
            self._thread.join(timeout=30)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def segments(self) -> list[int]:
        return sorted(int(p.name[4:-4]) for p in self.dir.glob("seg-*.log"))

    # receivers' side -----------------------------------------------------------------------
    def held(self) -> int:
        """Bytes on disk (and queued) that have not reached the lake."""
        seg, off = self.moved
        total = self._queued_bytes + sum(n for n, _ in list(self._parked.values()))
        for n, size in self._sizes.items():
            if n == self.segment:
                size = self.size
            if n > seg:
                total += size
            elif n == seg:
                total += max(0, size - off)
        return total

    def append(self, entry: Entry) -> Future[bool]:
        """Queue an entry; the future resolves to True once it is durable (False: a retried
        chunk that was already stored). Raises :class:`LogFull` when the bound is reached."""
        if self.broken:
            raise Refused(self.broken, 503)
        with self._lock:
            key = (entry.source_id, entry.chunk)
            if entry.chunk:
                if key in self._durable:
                    done: Future[bool] = Future()
                    done.set_result(False)
                    return done
                if key in self._pending:
                    return self._pending[key]
            held = self.held()
            if held + len(entry.data) > self.max_held:
                raise LogFull(held, self.max_held)
            fut: Future[bool] = Future()
            self._queue.append((entry, fut))
            self._queued_bytes += len(entry.data)
            self._count(entry.stream_id, len(entry.data))
            if entry.chunk:
                self._pending[key] = fut
            self._lock.notify()
            return fut

    def set_parked(self, stream: int, nbytes: int, why: str = "", from_log: int = 0) -> None:
        """What is parked for ``stream`` (0: nothing), counted against the bound; ``from_log``:
        bytes of its entries in the log that were just parked, no longer counted as in the log
        (in the same step, or for a moment they would count twice and refuse what fits)."""
        with self._lock:
            if nbytes:
                self._parked[stream] = (nbytes, why)
            else:
                self._parked.pop(stream, None)
            if from_log:
                self._count(stream, -from_log)

    def parked(self, stream: int) -> tuple[int, str]:
        """Bytes parked for ``stream`` and why its sink failed."""
        return self._parked.get(stream, (0, ""))

    def parked_streams(self) -> list[int]:
        """The streams with something parked."""
        return list(self._parked)

    def in_log(self, stream: int) -> int:
        """Bytes of ``stream``'s entries in the log (or queued) that were not moved yet."""
        return self._in_log.get(stream, 0)

    def _count(self, stream: int, nbytes: int) -> None:
        left = self._in_log.get(stream, 0) + nbytes
        if left > 0:
            self._in_log[stream] = left
        else:
            self._in_log.pop(stream, None)

    # the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._lock.wait()
                if not self._queue and self._stop:
                    return
                batch, self._queue = self._queue, []
            try:
                self._write(batch)
            except BaseException as err:  # a full or failing disk: nothing was acknowledged
                log.error("cannot write the ingestion log: %s", err)
                try:  # what a failed write left would hide what later writes add
                    os.ftruncate(self._fd, self.size)
                except OSError as cut:
                    log.critical(
                        "cannot cut the log back after a failed write: %s; no more "
                        "data is accepted until a restart",
                        cut,
                    )
                    self.broken = f"the ingestion log cannot be written: {err}"
                for _, fut in batch:
                    fut.set_exception(err)
                with self._lock:
                    for e, _ in batch:
                        self._pending.pop((e.source_id, e.chunk), None)
                        self._queued_bytes -= len(e.data)
                        self._count(e.stream_id, -len(e.data))
                time.sleep(0.5)

    def _tally(self, e: Entry) -> None:
        c = self._counts.setdefault(e.stream_id, [0, 0, 0.0])
        c[0] += len(e.data)
        c[1] += 1
        c[2] = max(c[2], e.received_at)

    def take_counts(self) -> tuple[dict[int, list[float]], tuple[int, int]]:
        """What became durable since the last call, by stream ([bytes, entries, newest
        received_at]), and the log position it reaches: the caller commits both together and
        gives the counts back if it cannot, so the counters count every entry once, even after
        ``kill -9`` (recovery counts again from the position last committed)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            return counts, self._counted

    def give_back(self, counts: dict[int, list[float]]) -> None:
        with self._lock:
            for sid, (nbytes, entries, last) in counts.items():
                c = self._counts.setdefault(sid, [0, 0, 0.0])
                c[0] += nbytes
                c[1] += entries
                c[2] = max(c[2], last)

    def _write(self, batch: list[tuple[Entry, Future[bool]]]) -> None:
        if self.size >= self.segment_bytes:
            self._roll()
        data = b"".join(encode(e) for e, _ in batch)
        written = 0
        while written < len(data):
            written += os.write(self._fd, memoryview(data)[written:])
        os.fdatasync(self._fd)
        now = time.time()
        with self._lock:
            self.size += len(data)
            for e, _ in batch:
                self._queued_bytes -= len(e.data)
                if e.chunk:
                    key = (e.source_id, e.chunk)
                    self._durable[key] = now
                    self._pending.pop(key, None)
                    self._seg_keys[self.segment].append((e.source_id, e.chunk, now))
                self._tally(e)
            self._counted = (self.segment, self.size)
        for _, fut in batch:
            fut.set_result(True)
        for ev in self.on_durable:
            ev.set()

    def _roll(self) -> None:
        os.close(self._fd)
        self.segment += 1
        self._fd = os.open(
            self.dir / seg_name(self.segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        fsync_dir(self.dir)
        with self._lock:
            self._sizes[self.segment - 1] = self.size
            self._sizes[self.segment] = 0
            self.size = 0
            self._seg_keys[self.segment] = []

    # the mover's side ----------------------------------------------------------------------
    def durable_end(self, segment: int) -> int:
        """How far ``segment`` may be read: fully if sealed, up to the fsynced size if current."""
        with self._lock:
            if segment == self.segment:
                return self.size
        return _size(self.dir / seg_name(segment))

    def set_moved(self, segment: int, offset: int, left: dict[int, int] | None = None) -> None:
        """Everything before (segment, offset) is in the lake (or parked): sealed segments behind
        it go, their chunk ids kept for the dedupe window. ``left``: bytes of each stream's
        entries that were moved."""
        with self._lock:
            self.moved = (segment, offset)
            for stream, nbytes in (left or {}).items():
                self._count(stream, -nbytes)
        now = time.time()
        for n in self.segments():
            if n >= segment or n == self.segment:
                continue
            keys = self._seg_keys.pop(n, [])
            if keys and self.dedupe_seconds:
                ids = self.dir / f"ids-{n:012d}.msgpack"
                ids.write_bytes(msgpack.packb(keys))
            (self.dir / seg_name(n)).unlink(missing_ok=True)
            with self._lock:
                self._sizes.pop(n, None)
        with self._lock:  # forget chunk ids older than the window
            if len(self._durable) > 10_000:
                old = [k for k, at in self._durable.items() if now - at > self.dedupe_seconds]
                for k in old:
                    del self._durable[k]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def scan(
    path: Path, start: int = 0, end: int | None = None, verify: bool = True
) -> Iterator[tuple[int, Entry]]:
    """Entries of a segment from ``start``: (offset after the entry, entry); stops at the first
    torn or corrupt frame (or at ``end``)."""
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        limit = end if end is not None else os.fstat(f.fileno()).st_size
        while pos + FRAME.size <= limit:
            head = f.read(FRAME.size)
            magic, fmt, length, crc = FRAME.unpack(head)
            if magic != MAGIC or pos + FRAME.size + length > limit:
                return
            body = f.read(length)
            if len(body) != length or (verify and zlib.crc32(body) != crc):
                return
            pos += FRAME.size + length
            try:
                entry = decode_body(fmt, body)
            except (ValueError, struct.error):
                return
            yield pos, entry
