"""What both receivers share: who is sending (sources), where it goes (routes), limits, the log.

Sources and streams are read from the database at start, every few seconds, and at once (at
most twice a second) when a request names something not known yet, so a source or stream made
through the API works on its first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import update

from lakehub.server.db import IngestCheckpoint, IngestStream, utcnow
from lakehub.server.identity.users import Directory
from lakehub.server.ingest.base import (
    DEFAULT_MAX_MESSAGE,
    Entry,
    Fmt,
    Refused,
    Source,
    Stream,
    StreamFull,
)
from lakehub.server.ingest.counters import record_error
from lakehub.server.ingest.log import LogWriter
from lakehub.server.ingest.registry import load, token_hash

log = logging.getLogger("lakehub.server.ingest")
RELOAD_EVERY = 3.0
RELOAD_ON_MISS_EVERY = 0.5
STATS_EVERY = 1.0
STAMP_MAX = 64  # bytes of the registry's stamp read (its writer puts 16)
COUNTED = 0  # the checkpoint row that holds how far the log was counted (1: moved, <0: parked)


def counted(db: Any) -> tuple[int, int] | None:
    """How far the log was counted into the streams' counters (None: never recorded, so what
    is on disk was counted the old way, as it arrived)."""
    with db.session() as s:
        row = s.get(IngestCheckpoint, COUNTED)
        return (row.segment, row.offset) if row else None


class Bucket:
    """A token bucket in bytes per second (bursts of one second). A message is taken whole while
    the bucket is not in debt, so one larger than a second's worth still passes, and the debt it
    leaves holds back what follows: over time the rate holds, whatever the message sizes."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.level = float(rate)
        self.at = time.monotonic()

    def take(self, n: int) -> float:
        """Take ``n`` bytes if the bucket is not in debt and return 0; otherwise take nothing and
        return the seconds until it is out of debt."""
        now = time.monotonic()
        self.level = min(self.rate, self.level + (now - self.at) * self.rate)
        self.at = now
        if self.level < 0:
            return -self.level / self.rate
        self.level -= n
        return 0.0


class Intake:
    def __init__(self, directory: Directory, logw: LogWriter, changed: Path | None = None) -> None:
        """``changed``: the file the control plane rewrites after every change of sources,
        streams, users or grants (see :func:`lakehub.server.ingest.registry.mark_changed`)."""
        self.directory = directory
        self.log = logw
        self.changed = changed
        self.sources: list[Source] = []
        self.streams: dict[int, Stream] = {}
        self.generation = 0  # moves on with every reload: what a connection cached is stale
        self._by_token: dict[str, Source] = {}
        self._by_id: dict[int, Source] = {}
        self._loaded = 0.0
        self._stamp = b""
        self._reloading = threading.Lock()
        self._buckets: dict[int, Bucket] = {}
        self._errors: dict[int, tuple[int, str]] = {}  # stream -> (count, the last one)
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self._counted_once = False  # the first flush records the log position even if idle
        self._active: set[int] = set()
        self.reload()

    # the registry ----------------------------------------------------------------------------
    def _read_stamp(self) -> bytes:
        """Read at every message (three system calls, each a moment without the interpreter
        for this thread: not ``Path.read_bytes``'s six)."""
        if not self.changed:
            return b""
        try:
            fd = os.open(self.changed, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return b""
        try:
            return os.read(fd, STAMP_MAX)
        finally:
            os.close(fd)

    def reload(self) -> None:
        with self._reloading:
            stamp = self._read_stamp()  # before reading: a change after it is seen next time
            sources, streams = load(self.directory)
            self.sources = sources
            self.streams = {s.id: s for s in streams}
            self._by_token = {s.token_hash: s for s in sources}
            self._by_id = {s.id: s for s in sources}
            self._stamp = stamp
            self._loaded = time.monotonic()
            self.generation += 1

    def fresh(self) -> None:
        """Read the registry again now if the control plane changed it: a deleted source, a
        revoked grant or a removed user is refused from the next message on. Raises
        :class:`Refused` (503) if it cannot be read: better refuse than route on stale grants."""
        if self._read_stamp() == self._stamp:
            return
        try:
            self.reload()
        except Exception as err:
            log.warning("cannot reload sources and streams: %s", err)
            raise Refused("the ingestion registry cannot be read just now; retry", 503) from None

    def maybe_reload(self, miss: bool = False) -> bool:
        self.fresh()
        age = time.monotonic() - self._loaded
        if age > RELOAD_EVERY or (miss and age > RELOAD_ON_MISS_EVERY):
            try:
                self.reload()
            except Exception as err:  # the database is busy: keep what we know
                log.warning("cannot reload sources and streams: %s", err)
                return False
            return True
        return False

    def stream(self, sid: int) -> Stream | None:
        """The stream with id ``sid`` as the registry has it now (the lake writers ask: a grant
        given back shows without any traffic); None if it is gone (deleted)."""
        with contextlib.suppress(Refused):  # the database is busy: keep what we know
            self.maybe_reload(miss=sid not in self.streams)
        return self.streams.get(sid)

    def message_limit(self, source_id: int) -> int:
        """The most bytes one message of that source may hold, also once inflated."""
        source = self._by_id.get(source_id)
        return source.max_message_bytes if source else DEFAULT_MAX_MESSAGE

    def by_token(self, token: str) -> Source:
        self.fresh()
        found = self._by_token.get(token_hash(token))
        if found is None and self.maybe_reload(miss=True):
            found = self._by_token.get(token_hash(token))
        if found is None:
            raise Refused("unknown source token", 401)
        return found

    def keyed(self) -> list[Source]:
        self.maybe_reload()
        found = [s for s in self.sources if s.shared_key]
        if not found and self.maybe_reload(miss=True):
            found = [s for s in self.sources if s.shared_key]
        return found

    def open_source(self, tag: str) -> Source:
        """The source without a shared key whose patterns take ``tag`` (Forward, no handshake).
        Keyless sources of two users never claim one tag (the registry refuses the second);
        should older ones do, the tag is refused rather than given to either."""
        for attempt in (0, 1):
            self.fresh()
            found = [s for s in self.sources if s.shared_key is None and s.allows(tag)]
            if len({s.owner for s in found}) > 1:
                raise Refused(
                    f"tag {tag!r} is claimed by sources of several users: "
                    "authenticate with your source's shared key",
                    403,
                )
            if found:
                return found[0]
            if attempt == 0 and not self.maybe_reload(miss=True):
                break
        raise Refused(
            f"no source without a shared key takes tag {tag!r}: "
            "authenticate with the source's shared key",
            403,
        )

    def check_key(self, hostname: bytes, salt: bytes, nonce: bytes, digest: bytes) -> Source:
        import hashlib

        for attempt in (0, 1):
            for s in self.keyed():
                assert s.shared_key is not None
                mine = hashlib.sha512(salt + hostname + nonce + s.shared_key.encode()).hexdigest()
                if hmac.compare_digest(mine.encode(), digest):
                    return s
            if attempt == 0 and not self.maybe_reload(miss=True):
                break
        raise Refused("shared key mismatch", 401)

    def current(self, source: Source, read: bool = True) -> Source:
        """``source`` as the registry has it now; refused once it was deleted (or its owner
        removed), even on a connection that authenticated before. ``read``: read the registry's
        stamp first (False: the caller just did, for the same message)."""
        if read:
            self.fresh()
        now = self._by_id.get(source.id)
        if now is None:
            raise Refused(f"source {source.name!r} no longer exists", 401)
        return now

    def route(self, source: Source, tag: str, read: bool = True) -> Stream:
        """The first stream (by position) of the source's owner that takes ``tag`` and lives in
        a bucket its owner may still write. Never another user's stream: a grant lets its
        holder write a space, it never moves anyone's records. ``read``: as for :meth:`current`."""
        source = self.current(source, read)
        if not source.allows(tag):
            raise Refused(f"source {source.name!r} may not send tag {tag!r}", 403)
        for attempt in (0, 1):
            for st in self.streams.values():
                if st.owner == source.owner and st.matches(tag) and st.owner in st.writers:
                    return st
            if attempt == 0 and not self.maybe_reload(miss=True):
                break
        raise Refused(f"no stream of {source.owner}'s routes tag {tag!r}", 404)

    # accepting data ----------------------------------------------------------------------------
    def throttle(self, source: Source, n: int) -> float:
        """0 when ``n`` bytes of ``source`` may go now (they are counted against its rate);
        otherwise the seconds to wait before asking again (nothing counted)."""
        if not source.max_bytes_per_s:
            return 0.0
        bucket = self._buckets.get(source.id)
        if bucket is None or bucket.rate != source.max_bytes_per_s:
            bucket = self._buckets[source.id] = Bucket(source.max_bytes_per_s)
        return bucket.take(n)

    def submit(
        self, source: Source, stream: Stream, fmt: Fmt, tag: str, data: bytes, chunk: str = ""
    ) -> asyncio.Future[bool]:
        """Append to the log; the awaitable resolves once durable. Raises :class:`Refused`
        (:class:`StreamFull` once a stream whose sink fails holds half of the buffer)."""
        if len(data) > source.max_message_bytes:
            raise Refused(
                f"message of {len(data)} bytes is larger than source "
                f"{source.name!r} allows ({source.max_message_bytes})",
                413,
            )
        mine = [
            sid
            for sid in self.log.parked_streams()
            if (other := self.streams.get(sid)) is not None and other.owner == stream.owner
        ]
        if mine:  # sinks of its owner fail: they may hold half of the buffer, the rest is others'
            held = sum(self.log.parked(sid)[0] + self.log.in_log(sid) for sid in mine)
            if stream.id not in mine:
                held += self.log.in_log(stream.id)
            if held + len(data) > self.log.max_held // 2:
                why = self.log.parked(mine[0])[1]
                raise StreamFull(stream.name, stream.owner, held, self.log.max_held // 2, why)
        fut = self.log.append(Entry(stream.id, source.id, fmt, time.time(), tag, data, chunk))
        return asyncio.wrap_future(fut)

    def error(self, stream: Stream | None, message: str) -> None:
        if stream is not None:
            with self._lock:
                count, _ = self._errors.get(stream.id, (0, ""))
                self._errors[stream.id] = (count + 1, message)

    def flush_stats(self) -> None:
        """Add what became durable in the log since the last flush to the streams' counters,
        with the rates they make, and commit the log position they reach in the same
        transaction (checkpoint row 0): after ``kill -9`` the receiver counts again from there,
        so every durable entry is counted exactly once."""
        now = time.monotonic()
        counts, counted = self.log.take_counts()
        with self._lock:
            errors, self._errors = self._errors, {}
        span = max(1e-3, now - self._flushed)
        idle = [sid for sid in self._active if sid not in counts]
        if not counts and not idle and not errors and self._counted_once:
            self._flushed = now
            return
        try:
            with self.directory.db.session() as s:
                if idle:
                    s.execute(
                        update(IngestStream)
                        .where(IngestStream.id.in_(idle))
                        .values(rate_bytes=0.0, rate_entries=0.0)
                    )
                for sid in set(counts) | set(errors):
                    nbytes, entries, last = counts.get(sid, (0, 0, 0.0))
                    errs, why = errors.get(sid, (0, ""))
                    values: dict[str, Any] = {
                        "received_bytes": IngestStream.received_bytes + int(nbytes),
                        "received_entries": IngestStream.received_entries + int(entries),
                        "rate_bytes": nbytes / span,
                        "rate_entries": entries / span,
                    }
                    if last:
                        values["last_event_at"] = last
                    s.execute(update(IngestStream).where(IngestStream.id == sid).values(**values))
                    if errs:
                        record_error(s, sid, why, errs)
                s.merge(
                    IngestCheckpoint(
                        id=COUNTED, segment=counted[0], offset=counted[1], updated_at=utcnow()
                    )
                )
        except Exception:
            self.log.give_back(counts)
            with self._lock:
                for sid, (n, why) in errors.items():
                    count, newer = self._errors.get(sid, (0, ""))
                    self._errors[sid] = (count + n, newer or why)
            raise
        self._flushed = now
        self._active = set(counts)
        self._counted_once = True
