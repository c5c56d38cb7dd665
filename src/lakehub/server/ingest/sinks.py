"""Sinks: a stream's batch from the log into the lake.

Records become Parquet under ``<prefix>/year=Y/month=M/day=D/part-<batch key>.parquet``, with
``_time`` (the event time, UTC) and ``_tag`` beside the record's own fields, encoded in a
process of its own (:mod:`lakehub.server.ingest.encode`). Every batch is conformed to the
stream's settled schema (:mod:`lakehub.server.ingest.schema`), which is published as
``<prefix>/_common_metadata`` (a Parquet footer) before any file that needs it, so readers see
every field with one type (:func:`lakehub.tables.open_dataset`). Raw streams get one object
``<prefix>/part-<batch key>.bin`` per batch: reading the objects in key order gives the bytes
in the order they were acknowledged. An entry that cannot be decoded (it was acknowledged on a
cheap check) is kept as it came under ``<prefix>/_rejected/`` and counted as an error: never
dropped, never blocking the rest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from lakehub.server.config import Settings, resolve
from lakehub.server.ingest.base import Batch, Fmt, Sink, Writer
from lakehub.server.ingest.encode import Encoder, EncoderDied, decode, misfit_note
from lakehub.server.lake.base import Lake
from lakehub.tables import SCHEMA_FILE

log = logging.getLogger("lakehub.server.ingest.sinks")


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
    def __init__(self, writer: Writer, limit: Callable[[int], int] | None = None) -> None:
        super().__init__(writer, limit)
        self.encoder = Encoder()

    def close(self) -> None:
        self.encoder.stop()

    def write(self, batch: Batch) -> tuple[int, int]:
        st = batch.stream
        limits = {e.source_id: self.limit(e.source_id) for e in batch.entries}
        try:
            enc = self.encoder.run(batch.entries, batch.schema, limits, batch.key)
        except EncoderDied as err:  # nothing was put: the whole batch again, after a moment
            raise LakeWriteError(str(err), unreachable=True) from None
        if enc.schema_file is not None:  # readers learn of a new field before a file holds it
            self.s3.put(st.bucket, f"{st.prefix}/{SCHEMA_FILE}".lstrip("/"), enc.schema_file)
            batch.schema = enc.schema
        records = nbytes = 0
        for path, body, rows in enc.files:
            self.s3.put(st.bucket, f"{st.prefix}/{path}".lstrip("/"), body)
            records += rows
            nbytes += len(body)
        for n, (i, why) in enumerate(enc.rejected):
            log.warning("stream %s: entry kept under _rejected/ (%s)", st.name, why)
            self.s3.put(
                st.bucket,
                f"{st.prefix}/_rejected/part-{batch.key}-{n}.bin".lstrip("/"),
                batch.entries[i].data,
            )
        notes = [misfit_note(enc.moved)] if enc.moved else []
        if enc.rejected:
            notes.append(
                f"{len(enc.rejected)} entries could not be decoded and were kept under "
                f"_rejected/: {enc.rejected[0][1]}"
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
