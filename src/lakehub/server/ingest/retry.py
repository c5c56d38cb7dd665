"""The parked writer: a thread that writes parked batches (see ``park.py``) to the lake again.

Each stream's oldest parked batch is tried when its backoff is over; one that lands is counted
with the stream's checkpoint in one transaction, its file goes, and the next follows at once. A
record stream's batch is conformed to the stream's settled schema as committed then (the lake
writer leaves a stream alone while it has parked batches, so that is the schema after every
batch before it), and the schema it moves on to is committed in the same transaction: written
again after a crash, it gives the same files. A thread of its own: a stream whose writes fail
slowly never holds up the lake writer.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import delete, select

from lakehub.server.db import IngestCheckpoint, utcnow
from lakehub.server.ingest.base import Batch, Sink, Stream
from lakehub.server.ingest.counters import add_moved, settled_schemas, stream_error
from lakehub.server.ingest.intake import Intake
from lakehub.server.ingest.park import Park, Parked, key_pos
from lakehub.server.ingest.sinks import PartlyRejected

log = logging.getLogger("lakehub.server.ingest.retry")
IDLE = 0.5  # seconds between looks when nothing is due


def landed(db: object) -> dict[int, tuple[int, int]]:
    """Each stream's checkpoint of parked batches: the key of the last that reached the lake."""
    with db.session() as s:  # type: ignore[attr-defined]
        rows = s.scalars(select(IngestCheckpoint).where(IngestCheckpoint.id < 0))
        return {-r.id: (r.segment, r.offset) for r in rows}


class ParkedWriter:
    def __init__(self, park: Park, intake: Intake, sinks: dict[str, Sink]) -> None:
        self.park = park
        self.intake = intake
        self.db = intake.directory.db
        self.sinks = sinks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parked-writer", daemon=True)

    def start(self) -> None:
        self.park.open(self.park.log.moved, landed(self.db))
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception as err:  # the database is busy: try again in a moment
                log.error("writing parked batches failed: %s", err)
                busy = False
            if not busy:
                self._stop.wait(IDLE)

    def step(self) -> bool:
        """Try every due stream's oldest parked batch; True if one reached the lake."""
        done = False
        for sid, p in self.park.due():
            if key_pos(p.key) >= self.park.log.moved:  # its batch is not committed yet
                continue
            stream = self.intake.stream(sid)
            if stream is None:
                log.warning(
                    "stream %d is gone: %d parked batches of it dropped", sid, self.park.drop(sid)
                )
                with self.db.session() as s:
                    s.execute(delete(IngestCheckpoint).where(IngestCheckpoint.id == -sid))
                continue
            done = self._land(stream, p) or done
        return done

    def _land(self, stream: Stream, p: Parked) -> bool:
        error = ""
        try:
            if why := stream.revoked():
                raise PermissionError(why)
            entries = self.park.read(p)
            before = settled_schemas(self.db, [stream.id]).get(stream.id)
            batch = Batch(stream, p.key, entries, before)
            records, nbytes = self.sinks[stream.kind].write(batch)
        except PartlyRejected as err:
            records, nbytes, error = err.records, err.nbytes, str(err)
        except Exception as err:
            why = f"cannot write to s3://{stream.bucket}/{stream.prefix}: {err}"
            wait = self.park.failed(stream.id, why)
            log.warning(
                "stream %s: a parked batch failed again, next try in %.0f s: %s",
                stream.name,
                wait,
                why,
            )
            stream_error(self.db, stream.id, why)
            return False
        schemas = {stream.id: batch.schema} if batch.schema != before else {}
        with self.db.session() as s:  # counters, schema and the stream's checkpoint, together
            row = s.get(IngestCheckpoint, -stream.id)
            if row is None:
                row = IngestCheckpoint(id=-stream.id)
                s.add(row)
            (row.segment, row.offset), row.updated_at = key_pos(p.key), utcnow()
            until = max(e.received_at for e in entries)
            add_moved(
                s,
                {stream.id: (records, nbytes, until)},
                {stream.id: error} if error else {},
                schemas,
            )
        self.park.landed(p)
        log.info("stream %s: parked batch %s reached the lake", stream.name, p.key)
        return True
