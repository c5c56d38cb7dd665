"""The lake writer: moves the log to the lake in batches, then advances the checkpoint.

A batch starts where the checkpoint is and ends at the last entry boundary within
``MAX_BATCH`` bytes or at the durable end of the segment, so after a crash the same start gives
the same keys and a batch that is at least as long: the sinks overwrite what they wrote, and
every entry lands exactly once. The checkpoint, the streams' counters and their settled schemas
change in one database transaction after every sink of the batch succeeded or parked its part,
so a batch written again after a crash is conformed to the same schema as the first time. While
the lake does not answer, the batch is retried (backoff up to ``MAX_BACKOFF``) and the log grows
up to its bound. When the lake answers but one stream's sink fails, that stream's part is parked
on local disk and the others go on (see ``park.py``); its parked batches are conformed to its
settled schema when they land, in order, and commit it the same way (see ``retry.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from lakehub.server.db import IngestCheckpoint, utcnow
from lakehub.server.ingest.base import Batch, Entry, Sink, Stream
from lakehub.server.ingest.counters import Counts, Schemas, add_moved, settled_schemas, stream_error
from lakehub.server.ingest.intake import Intake
from lakehub.server.ingest.log import LogWriter, scan, seg_name
from lakehub.server.ingest.park import Park
from lakehub.server.ingest.retry import ParkedWriter
from lakehub.server.ingest.sinks import LakeWriteError, PartlyRejected

log = logging.getLogger("lakehub.server.ingest.mover")
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
    def __init__(
        self,
        intake: Intake,
        logw: LogWriter,
        sinks: dict[str, Sink],
        batch_seconds: float = 1.0,
        probe: Callable[[], object] | None = None,
    ) -> None:
        """``probe`` raises unless the lake answers: a sink that fails while it answers fails
        for its stream only (without a probe every failure is taken for the lake's)."""
        self.intake = intake
        self.log = logw
        self.db = intake.directory.db
        self.sinks = sinks
        self.batch_seconds = batch_seconds
        self.probe = probe
        self.park = Park(logw.dir / "parked", logw)
        self.parked = ParkedWriter(self.park, intake, sinks)
        self.wake = threading.Event()
        logw.on_durable.append(self.wake)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lake-writer", daemon=True)
        self.backoff = 0.5

    def start(self) -> None:
        self.parked.start()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)
        self.parked.stop(timeout)
        for sink in self.sinks.values():
            sink.close()

    def _run(self) -> None:
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
                self._commit(seg + 1, 0, {}, {}, {}, {})
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
        left: dict[int, int] = defaultdict(int)
        for e in entries:
            by_stream[e.stream_id].append(e)
            left[e.stream_id] += len(e.data)
        counts: Counts = {}
        errors: dict[int, str] = {}
        parked: dict[int, tuple[list[Entry], str]] = {}
        answers: bool | None = None  # the lake's answer to a probe, once a sink failed
        streams: dict[int, Stream] = {}
        for sid, group in by_stream.items():
            stream = self.intake.stream(sid)
            if stream is None:  # deleted since: what it received has nowhere to go
                log.warning("stream %d is gone: %d entries of it skipped", sid, len(group))
            elif self.park.has(sid):  # behind its parked batches, to keep its order
                parked[sid] = (group, "")
            elif why := stream.revoked():  # kept until the grant is back or the stream deleted
                stream_error(self.db, sid, why)
                parked[sid] = (group, why)
            else:
                streams[sid] = stream
        # read once these streams have nothing parked: the parked writer commits a stream's
        # schema before its last parked batch goes, and only this thread parks batches
        settled = settled_schemas(self.db, list(streams))
        schemas: Schemas = {}
        for sid, stream in streams.items():
            group = by_stream[sid]
            batch = Batch(stream, key, group, settled.get(sid))
            try:
                records, nbytes = self.sinks[stream.kind].write(batch)
            except PartlyRejected as err:
                records, nbytes = err.records, err.nbytes
                errors[sid] = str(err)
            except Exception as err:
                why = f"cannot write to s3://{stream.bucket}/{stream.prefix}: {err}"
                stream_error(self.db, sid, why)
                if isinstance(err, LakeWriteError) and err.unreachable:
                    raise  # the lake is down for everyone: retry the batch
                if answers is None:
                    answers = self._answers()
                if not answers:
                    raise
                log.warning("stream %s: %s; its entries wait on local disk", stream.name, why)
                parked[sid] = (group, why)  # conformed again when it lands (same schema before)
                continue
            counts[sid] = (records, nbytes, max(e.received_at for e in group))
            if batch.schema != settled.get(sid):
                schemas[sid] = batch.schema
        for sid, (group, why) in parked.items():  # durable before the checkpoint passes them
            self.park.put(sid, key, group, why)  # counted as parked, no longer as in the log
        moved = {sid: n for sid, n in left.items() if sid not in parked}
        self._commit(seg, new_off, counts, errors, schemas, moved)
        return True

    def _answers(self) -> bool:
        """Whether the lake answers a probe: a sink's failure (a refusal, not a timeout) is then
        its stream's alone."""
        if self.probe is None:
            return False
        try:
            self.probe()
        except Exception as why:
            log.warning("the lake does not answer: %s", why)
            return False
        return True

    def _commit(
        self,
        seg: int,
        off: int,
        counts: Counts,
        errors: dict[int, str],
        schemas: Schemas,
        left: dict[int, int],
    ) -> None:
        with self.db.session() as s:
            row = s.get(IngestCheckpoint, 1)
            if row is None:
                row = IngestCheckpoint(id=1)
                s.add(row)
            row.segment, row.offset, row.updated_at = seg, off, utcnow()
            add_moved(s, counts, errors, schemas)
        self.log.set_moved(seg, off, left)
