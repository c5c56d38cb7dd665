"""The ingestion contracts: what a receiver hands the log, what the log promises, what a sink does.

Rules every receiver keeps:

- it acknowledges (a Forward ``ack``, an HTTP 2xx) only after :meth:`LogWriter.append` resolved,
  which means the entry is fsynced in the local log;
- it refuses with :class:`Refused` (a one-line reason, logged; Forward closes the connection
  without an ack, HTTP answers ``status``) and never drops data it has acknowledged;
- it checks the source's tag patterns, size and rate limits before appending, and the cheap
  shape of the payload; what needs decoding record by record is the writer's job.

Rules every sink keeps (see :mod:`lakehub.server.ingest.sinks`; the setting ``ingest_sinks``
chooses the class for each kind of stream, built as ``Sink(writer, limit)``): writing the same
batch again (after a crash, before the checkpoint moved) replaces the objects it wrote the first
time, under the same keys, so every entry reaches the lake exactly once; it writes only through
its writer, which raises ``LakeWriteError`` (``unreachable``: the lake did not answer at all).
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

DEFAULT_MAX_MESSAGE = 16 * 2**20  # a source's largest message, also once inflated


class Refused(Exception):
    """Data not accepted; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400, retry_after: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, for a 429 or 503


class Fmt(IntEnum):
    """How an entry's payload is encoded in the log."""

    MSGPACK_ENTRIES = 1  # concatenated msgpack [time, record] (Message mode, PackedForward)
    MSGPACK_ARRAY = 2  # one msgpack array of [time, record] (Forward mode)
    GZIP_ENTRIES = 3  # gzip of MSGPACK_ENTRIES (CompressedPackedForward)
    JSON = 4  # one JSON object or an array of objects
    NDJSON = 5
    CSV = 6  # with a header line
    MSGPACK_RECORDS = 7  # concatenated msgpack maps, [time, map] or [[time, meta], map]
    RAW = 8  # bytes appended to a raw stream as they are


@dataclass(frozen=True)
class Source:
    id: int
    name: str
    owner: str
    tags: tuple[str, ...]
    shared_key: str | None  # plain, in memory only
    token_hash: str
    max_bytes_per_s: int | None
    max_message_bytes: int

    def allows(self, tag: str) -> bool:
        return any(fnmatch.fnmatchcase(tag, p) for p in self.tags)

    def __repr__(self) -> str:  # never show the shared key
        return f"Source({self.name!r}, owner={self.owner!r}, tags={self.tags!r})"


@dataclass(frozen=True)
class Stream:
    id: int
    name: str
    owner: str
    kind: str  # records | raw
    bucket: str
    prefix: str
    tags: tuple[str, ...]
    writers: frozenset[str] = field(default_factory=frozenset)  # users who may write to it

    def matches(self, tag: str) -> bool:
        return any(fnmatch.fnmatchcase(tag, p) for p in self.tags)

    def revoked(self) -> str:
        """Why its owner may no longer write where it lives ('' if they may). The lake writer
        acts with the lake's administrator key, so it holds the owner's grants itself."""
        if self.owner in self.writers:
            return ""
        return (
            f"{self.owner} may no longer write s3://{self.bucket}/: what this stream "
            "received waits on local disk until the grant is back or the stream is deleted"
        )


@dataclass(frozen=True)
class Entry:
    """One unit in the log: a chunk, a message or a request body, for one stream."""

    stream_id: int
    source_id: int
    fmt: Fmt
    received_at: float
    tag: str
    data: bytes
    chunk: str = ""  # the client's chunk id; with source_id the key that deduplicates retries


@dataclass
class Batch:
    """Entries of one stream read from the log, ready for its sink."""

    stream: Stream
    key: str  # ``<segment>-<offset>`` of the first entry of the batch: same batch, same key
    entries: list[Entry]
    # records: the stream's settled schema before the batch (JSON, None if none yet); a sink
    # that moves it on puts the new one here, and the writer commits it with the checkpoint
    schema: str | None = None


class Writer(Protocol):
    def put(self, bucket: str, key: str, body: bytes) -> None:
        """One object into the lake, as the lake's administrator."""


class Sink(ABC):
    """Writes a stream's batch into the lake through ``writer``; ``limit(source_id)``: how far
    that source's compressed entries may inflate."""

    def __init__(self, writer: Writer, limit: Callable[[int], int] | None = None) -> None:
        self.s3 = writer
        self.limit = limit or (lambda _source_id: DEFAULT_MAX_MESSAGE)

    @abstractmethod
    def write(self, batch: Batch) -> tuple[int, int]:
        """Write the batch; returns (records, bytes) written."""

    def close(self) -> None:  # noqa: B027 (optional)
        """After the last batch (the lake writer's stop)."""


class LogFull(Refused):
    def __init__(self, held: int, limit: int) -> None:
        super().__init__(
            f"the ingestion buffer is full ({held} of {limit} bytes not yet in the lake): "
            "the lake is not keeping up or is down; retry later",
            503,
        )


class StreamFull(Refused):
    """Streams whose batches cannot be written hold their owner's share of the buffer on disk."""

    def __init__(self, stream: str, owner: str, parked: int, limit: int, why: str) -> None:
        super().__init__(
            f"stream {stream!r} cannot be written to the lake: {parked} bytes of {owner}'s "
            f"streams wait on local disk, the most one user's streams may hold ({limit}); "
            "retry later" + (f". The lake writer said: {why}" if why else ""),
            503,
        )


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` (one or more concatenated gzip members, as fluentd writes them) decompressed,
    never holding more than ``limit`` bytes of output: raises :class:`Refused` (413) beyond
    ``limit``, ValueError when the data is not gzip or is cut short."""
    import zlib

    out: list[bytes] = []
    total = 0
    while data:
        if data[:2] != b"\x1f\x8b" and out:  # zero padding may follow the last member
            if data.strip(b"\0"):
                raise ValueError("data after the last gzip member")
            break
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = d.decompress(data, limit - total + 1)
        except zlib.error as err:
            raise ValueError(f"not gzip: {err}") from None
        total += len(part)
        if total > limit:
            raise Refused(
                f"compressed entries inflate to more than {limit} bytes, the most "
                "this source may send in one message",
                413,
            )
        out.append(part)
        if not d.eof:
            raise ValueError("gzip data cut short")
        data = d.unused_data
    return b"".join(out)


def json_loads(text: bytes) -> Any:
    """A JSON text parsed with orjson (three times the standard parser's speed here), or with the
    standard parser when orjson refuses what JSON readers accept (NaN, integers beyond 64 bits).
    Raises ValueError."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        import json

        return json.loads(text)


def parse_event_time(value: Any) -> float:
    """A Forward event time: an integer, a float, or msgpack ext 0 (EventTime) seconds.nanos."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    code = getattr(value, "code", None)
    data = getattr(value, "data", b"")
    if code == 0 and len(data) == 8:
        return int.from_bytes(data[:4], "big") + int.from_bytes(data[4:], "big") / 1e9
    raise ValueError(f"not an event time: {type(value).__name__}")
