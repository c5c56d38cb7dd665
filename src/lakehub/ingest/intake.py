"""What both receivers share: who is sending (sources), where it goes (routes), limits, the log.

Sources and streams are read from the database at start, every few seconds, and at once (at
most twice a second) when a request names something not known yet, so a source or stream made
through the API works on its first use.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import update

from lakehub.hub.db import IngestStream
from lakehub.ingest.base import Entry, Fmt, Refused, Source, Stream, StreamFull
from lakehub.ingest.log import LogWriter
from lakehub.ingest.registry import load, token_hash
from lakehub.users import Directory

log = logging.getLogger("lakehub.ingest")
RELOAD_EVERY = 3.0
RELOAD_ON_MISS_EVERY = 0.5
STATS_EVERY = 1.0


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
    def __init__(self, directory: Directory, logw: LogWriter) -> None:
        self.directory = directory
        self.log = logw
        self.sources: list[Source] = []
        self.streams: dict[int, Stream] = {}
        self._by_token: dict[str, Source] = {}
        self._loaded = 0.0
        self._buckets: dict[int, Bucket] = {}
        self._stats: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])
        self._errors: dict[int, str] = {}
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self._active: set[int] = set()
        self.reload()

    # the registry ----------------------------------------------------------------------------
    def reload(self) -> None:
        sources, streams = load(self.directory)
        self.sources = sources
        self.streams = {s.id: s for s in streams}
        self._by_token = {s.token_hash: s for s in sources}
        self._loaded = time.monotonic()

    def maybe_reload(self, miss: bool = False) -> bool:
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
        """The stream with id ``sid``; None if it is gone (deleted)."""
        if sid not in self.streams:
            self.maybe_reload(miss=True)
        return self.streams.get(sid)

    def by_token(self, token: str) -> Source:
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
        """The source without a shared key whose patterns take ``tag`` (Forward, no handshake)."""
        for attempt in (0, 1):
            for s in self.sources:
                if s.shared_key is None and s.allows(tag):
                    return s
            if attempt == 0 and not self.maybe_reload(miss=True):
                break
        raise Refused(f"no source without a shared key takes tag {tag!r}: "
                      "authenticate with the source's shared key", 403)  # fmt: skip

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

    def route(self, source: Source, tag: str) -> Stream:
        if not source.allows(tag):
            raise Refused(f"source {source.name!r} may not send tag {tag!r}", 403)
        for attempt in (0, 1):
            for st in self.streams.values():
                if st.matches(tag) and source.owner in st.writers:
                    return st
            if attempt == 0 and not self.maybe_reload(miss=True):
                break
        raise Refused(f"no stream of {source.owner}'s (or writable by them) routes tag {tag!r}",
                      404)  # fmt: skip

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

    def submit(self, source: Source, stream: Stream, fmt: Fmt, tag: str, data: bytes,
               chunk: str = "") -> asyncio.Future[bool]:  # fmt: skip
        """Append to the log; the awaitable resolves once durable. Raises :class:`Refused`
        (:class:`StreamFull` once a stream whose sink fails holds half of the buffer)."""
        if len(data) > source.max_message_bytes:
            raise Refused(f"message of {len(data)} bytes is larger than source "
                          f"{source.name!r} allows ({source.max_message_bytes})", 413)  # fmt: skip
        parked, why = self.log.parked(stream.id)
        if parked:  # its sink fails: it may hold half of the buffer, the rest is the others'
            held = parked + self.log.in_log(stream.id)
            if held + len(data) > self.log.max_held // 2:
                raise StreamFull(stream.name, held, self.log.max_held // 2, why)
        now = time.time()
        fut = self.log.append(Entry(stream.id, source.id, fmt, now, tag, data, chunk))
        with self._lock:
            st = self._stats[stream.id]
            st[0] += len(data)
            st[1] += 1
            st[2] = now
        return asyncio.wrap_future(fut)

    def error(self, stream: Stream | None, message: str) -> None:
        if stream is not None:
            with self._lock:
                self._stats[stream.id][3] += 1
                self._errors[stream.id] = message

    def flush_stats(self) -> None:
        """Add the counters since the last flush to the database, with the rates they make."""
        now = time.monotonic()
        with self._lock:
            stats, self._stats = self._stats, defaultdict(lambda: [0, 0, 0.0, 0])
            errors, self._errors = self._errors, {}
        span, self._flushed = max(1e-3, now - self._flushed), now
        idle = [sid for sid in self._active if sid not in stats]
        self._active = set(stats)
        if not stats and not idle:
            return
        with self.directory.db.session() as s:
            if idle:
                s.execute(update(IngestStream).where(IngestStream.id.in_(idle))
                          .values(rate_bytes=0.0, rate_entries=0.0))  # fmt: skip
            for sid, (nbytes, entries, last, errs) in stats.items():
                values: dict[str, Any] = {
                    "received_bytes": IngestStream.received_bytes + int(nbytes),
                    "received_entries": IngestStream.received_entries + int(entries),
                    "errors": IngestStream.errors + int(errs),
                    "rate_bytes": nbytes / span,
                    "rate_entries": entries / span,
                }
                if last:
                    values["last_event_at"] = last
                if sid in errors:
                    values["last_error"] = errors[sid][:1000]
                s.execute(update(IngestStream).where(IngestStream.id == sid).values(**values))
