"""The lake writer: moves the log to the lake in batches, then advances the checkpoint.

A batch starts where the checkpoint is and ends at the last entry boundary within
``MAX_BATCH`` bytes or at the durable end of the segment, so after a crash the same start gives
the same keys and a batch that is at least as long: the sinks overwrite what they wrote, and
every entry lands exactly once. The checkpoint, the streams' counters and their settled schemas
change in one database transaction after every sink of the batch succeeded, so a batch written
again after a crash is conformed to the same schema as the first time. While the lake fails,
the batch is retried (backoff up to ``MAX_BACKOFF``) and the log grows up to its bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from sqlalchemy import select, update

from lakehub.hub.db import Dataset, IngestCheckpoint, IngestStream, utcnow
from lakehub.ingest.base import Batch, Entry, Sink
from lakehub.ingest.intake import Intake
from lakehub.ingest.log import LogWriter, scan, seg_name
from lakehub.ingest.schema import catalog_columns, loads
from lakehub.ingest.sinks import PartlyRejected

log = logging.getLogger("lakehub.ingest.mover")
MAX_BATCH = 32 * 2**20
MAX_BACKOFF = 10.0


def checkpoint(db: object) -> tuple[int, int]:
    with db.session() as s:  # type: ignore[attr-defined]
        row = s.get(IngestCheckpoint, 1)
        if row is None:
            s.add(IngestCheckpoint(id=1, segment=0, offset=0))
            return (0, 0)
        return (row.segment, row.offset)


class Mover:
    def __init__(self, intake: Intake, logw: LogWriter, sinks: dict[str, Sink],
                 batch_seconds: float = 1.0) -> None:  # fmt: skip
        self.intake = intake
        self.log = logw
        self.db = intake.directory.db
        self.sinks = sinks
        self.batch_seconds = batch_seconds
        self.wake = threading.Event()
        logw.on_durable.append(self.wake)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lake-writer", daemon=True)
        self.backoff = 0.5

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import pyarrow.parquet  # noqa: F401 (loaded before the first batch waits on it)

        while not self._stop.is_set():
            try:
                moved = self.step()
            except Exception as err:
                log.error("writing to the lake failed, retrying in %.1f s: %s", self.backoff, err)
                self._stop.wait(self.backoff)
                self.backoff = min(MAX_BACKOFF, self.backoff * 2)
                continue
            self.backoff = 0.5
            if not moved:
                self.wake.wait(self.batch_seconds)
                self.wake.clear()

    def step(self) -> bool:
        """Move one batch; False when there was nothing to move."""
        seg, off = self.log.moved
        segs = [n for n in self.log.segments() if n >= seg]
        if not segs:
            return False
        if seg < segs[0]:  # the checkpoint's segment is gone (moved): go on with the next
            seg, off = segs[0], 0
        end = self.log.durable_end(seg)
        if off >= end:
            if seg < self.log.segment:  # sealed and fully moved: on to the next one
                self._commit(seg + 1, 0, {}, {}, {})
                return True
            return False
        if end - off < MAX_BATCH and seg == self.log.segment:
            # let a batch fill for a moment (bounded: the wait ends the same on a redo)
            first = next(scan(self.log.dir / seg_name(seg), off, end, verify=False), None)
            age = time.time() - first[1].received_at if first else self.batch_seconds
            if age < self.batch_seconds:
                self._stop.wait(max(0.05, self.batch_seconds - age))
                end = self.log.durable_end(seg)
        entries: list[Entry] = []
        new_off = off
        for pos, entry in scan(self.log.dir / seg_name(seg), off, end):
            if entries and pos - off > MAX_BATCH:
                break
            entries.append(entry)
            new_off = pos
        if not entries:
            raise RuntimeError(f"{seg_name(seg)} at {off}: unreadable entry before the durable end")
        key = f"{seg:012d}-{off:012d}"
        by_stream: dict[int, list[Entry]] = defaultdict(list)
        for e in entries:
            by_stream[e.stream_id].append(e)
        counts: dict[int, tuple[int, int, float]] = {}
        errors: dict[int, str] = {}
        settled = self._schemas(list(by_stream))
        schemas: dict[int, str | None] = {}
        for sid, group in by_stream.items():
            stream = self.intake.streams.get(sid)
            if stream is None:
                self.intake.maybe_reload(miss=True)
                stream = self.intake.streams.get(sid)
            if stream is None:  # deleted since: what it received has nowhere to go
                log.warning("stream %d is gone: %d entries of it skipped", sid, len(group))
                continue
            batch = Batch(stream, key, group, settled.get(sid))
            try:
                records, nbytes = self.sinks[stream.kind].write(batch)
            except PartlyRejected as err:
                records, nbytes = err.records, err.nbytes
                errors[sid] = str(err)
            except Exception as err:
                self._error(sid, f"cannot write to s3://{stream.bucket}/{stream.prefix}: {err}")
                raise
            counts[sid] = (records, nbytes, max(e.received_at for e in group))
            if batch.schema != settled.get(sid):
                schemas[sid] = batch.schema
        self._commit(seg, new_off, counts, errors, schemas)
        return True

    def _schemas(self, sids: list[int]) -> dict[int, str | None]:
        """The streams' settled schemas, as last committed."""
        with self.db.session() as s:
            rows = s.execute(select(IngestStream.id, IngestStream.schema_json)
                             .where(IngestStream.id.in_(sids))).all()  # fmt: skip
        return {sid: doc for sid, doc in rows}

    def _commit(self, seg: int, off: int, counts: dict[int, tuple[int, int, float]],
                errors: dict[int, str], schemas: dict[int, str | None]) -> None:  # fmt: skip
        with self.db.session() as s:
            row = s.get(IngestCheckpoint, 1)
            if row is None:
                row = IngestCheckpoint(id=1)
                s.add(row)
            row.segment, row.offset, row.updated_at = seg, off, utcnow()
            for sid, (records, nbytes, until) in counts.items():
                values: dict[str, object] = {
                    "moved_records": IngestStream.moved_records + records,
                    "moved_bytes": IngestStream.moved_bytes + nbytes,
                    "moved_until": until,
                }
                if sid in errors:
                    values["errors"] = IngestStream.errors + 1
                    values["last_error"] = errors[sid][:1000]
                if sid in schemas:
                    values["schema_json"] = schemas[sid]
                s.execute(update(IngestStream).where(IngestStream.id == sid).values(**values))
                name = s.scalar(select(IngestStream.dataset).where(IngestStream.id == sid))
                if name:
                    columns = {"schema_json": catalog_columns(loads(schemas[sid]))} \
                        if sid in schemas else {}  # fmt: skip
                    s.execute(update(Dataset).where(Dataset.name == name).values(
                        row_count=Dataset.row_count + records, size_bytes=Dataset.size_bytes
                        + nbytes, file_count=Dataset.file_count + 1, updated_at=utcnow(),
                        **columns,
                    ))  # fmt: skip
        self.log.set_moved(seg, off)

    def _error(self, sid: int, message: str) -> None:
        try:
            with self.db.session() as s:
                s.execute(update(IngestStream).where(IngestStream.id == sid).values(
                    errors=IngestStream.errors + 1, last_error=message[:1000]))  # fmt: skip
        except Exception as err:
            log.warning("cannot record a stream's error: %s", err)
