"""Parked batches: a stream's part of a batch that its sink could not write, kept on local disk.

When one stream's sink fails while the lake answers (its bucket was deleted, its rights are
broken, its data meets a bug), the lake writer parks that stream's entries of the batch in
``<log dir>/parked/<stream>-<batch key>.log`` (the log's framing; written to a temporary file,
fsynced, renamed, the folder fsynced) and commits the batch for the other streams. While a
stream has parked batches its later entries are parked behind them, so it keeps its order; the
writer tries each stream's oldest parked batch again, with a backoff per stream, under the same
batch key (the sink overwrites what an earlier try wrote).

Exactly once: a parked batch lands with the stream's counters and the stream's own checkpoint
(row ``-<stream id>`` of ``ingest_checkpoint``: the key of its last landed parked batch) in one
transaction, and its file goes after that: a file at or behind that checkpoint has landed. A
file at or beyond the log's checkpoint was written just before a crash kept the batch from
being committed: the batch is read from the log again, and parked again if need be.

Parked bytes count against the buffer bound (:meth:`LogWriter.set_parked`). The lake writer parks
(one thread) and the parked writer (``retry.py``, another thread) lands and removes: the lock keeps
what each sees of the files whole.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lakehub.server.ingest.base import Entry
from lakehub.server.ingest.log import LogWriter, encode, fsync_dir, scan

log = logging.getLogger("lakehub.server.ingest.park")
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
Pos = tuple[int, int]  # (segment, offset) of the log


def key_pos(key: str) -> Pos:
    seg, _, off = key.partition("-")
    return int(seg), int(off)


@dataclass(frozen=True)
class Parked:
    stream: int
    key: str  # the batch key (``<segment>-<offset>``), the same when it is written later
    path: Path
    size: int


class Park:
    def __init__(self, folder: Path, logw: LogWriter) -> None:
        self.dir = folder
        self.log = logw
        self._files: dict[int, list[Parked]] = {}  # stream -> parked batches, oldest first
        self._due: dict[int, float] = {}  # stream -> when to try again (monotonic)
        self._backoff: dict[int, float] = {}
        self._why: dict[int, str] = {}
        self._lock = threading.Lock()

    def open(self, moved: Pos, landed: dict[int, Pos]) -> None:
        """Take what is on disk: ``moved`` is the log's checkpoint, ``landed`` the streams'."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink()
        for path in sorted(self.dir.glob("*.log")):
            sid_s, _, key = path.stem.partition("-")
            sid, pos = int(sid_s), key_pos(key)
            # parked just before a crash kept the batch from being committed (the log has
            # it), or landed before the file went
            if pos >= moved or (sid in landed and pos <= landed[sid]):
                path.unlink()
            else:
                self._files.setdefault(sid, []).append(Parked(sid, key, path, path.stat().st_size))
        fsync_dir(self.dir)
        for sid, files in self._files.items():
            log.info("stream %d: %d batches parked on local disk", sid, len(files))
            self._due[sid] = 0.0
            self._account(sid)

    def has(self, stream: int) -> bool:
        with self._lock:
            return bool(self._files.get(stream))

    def put(self, stream: int, key: str, entries: list[Entry], why: str) -> None:
        """Park ``entries`` of ``stream`` (durably) under the batch ``key``."""
        path = self.dir / f"{stream:010d}-{key}.log"
        tmp = self.dir / f".{path.name}.tmp"
        data = b"".join(encode(e) for e in entries)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(self.dir)
        with self._lock:
            before = self._files.get(stream, [])
            files = [p for p in before if p.key != key]
            self._files[stream] = [*files, Parked(stream, key, path, len(data))]
            self._why[stream] = why or self._why.get(stream, "")
            self._due.setdefault(stream, time.monotonic() + FIRST_BACKOFF)
            # parked again (the batch's commit failed): its entries left the log's count before
            fresh = len(files) == len(before)
            self._account(stream, sum(len(e.data) for e in entries) if fresh else 0)

    def due(self) -> list[tuple[int, Parked]]:
        """The oldest parked batch of every stream whose time to try again has come."""
        now = time.monotonic()
        with self._lock:
            return [
                (sid, files[0])
                for sid, files in self._files.items()
                if files and self._due.get(sid, 0.0) <= now
            ]

    @staticmethod
    def read(p: Parked) -> list[Entry]:
        entries, end = [], 0
        for pos, e in scan(p.path):
            entries.append(e)
            end = pos
        if end != p.size:
            raise ValueError(f"{p.path.name} is damaged at byte {end}")
        return entries

    def failed(self, stream: int, why: str) -> float:
        """The stream's batch failed again: back off; returns the seconds until the next try."""
        with self._lock:
            wait = min(MAX_BACKOFF, self._backoff.get(stream, FIRST_BACKOFF / 2) * 2)
            self._backoff[stream] = wait
            self._due[stream] = time.monotonic() + wait
            self._why[stream] = why
            self._account(stream)
        return wait

    def landed(self, p: Parked) -> None:
        """``p`` reached the lake and is counted: its file goes; the next is tried at once."""
        p.path.unlink(missing_ok=True)
        fsync_dir(self.dir)
        with self._lock:
            files = [q for q in self._files.get(p.stream, []) if q.key != p.key]
            self._backoff.pop(p.stream, None)
            self._due[p.stream] = 0.0
            if files:
                self._files[p.stream] = files
            else:
                self._forget(p.stream)
            self._account(p.stream)

    def drop(self, stream: int) -> int:
        """Remove everything parked for ``stream`` (it was deleted); returns the batches."""
        with self._lock:
            files = self._files.get(stream, [])
            self._forget(stream)
            self._account(stream)
        for p in files:
            p.path.unlink(missing_ok=True)
        fsync_dir(self.dir)
        return len(files)

    def _forget(self, stream: int) -> None:
        self._files.pop(stream, None)
        self._due.pop(stream, None)
        self._backoff.pop(stream, None)
        self._why.pop(stream, None)

    def _account(self, stream: int, from_log: int = 0) -> None:
        size = sum(p.size for p in self._files.get(stream, []))
        self.log.set_parked(stream, size, self._why.get(stream, ""), from_log)
