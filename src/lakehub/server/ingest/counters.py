"""What the lake writers keep of the streams in the database: their counters (moved records,
bytes, errors) and a record stream's settled schema (see ``schema.py``), and those of the dataset
each fills. Both writers (the log's and the parked batches') change them only here, in the
transaction that advances their checkpoint."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lakehub.server.db import Dataset, IngestError, IngestStream, utcnow
from lakehub.server.ingest.schema import catalog_columns, loads

log = logging.getLogger("lakehub.server.ingest")
Counts = dict[int, tuple[int, int, float]]  # stream -> (records, bytes, received until)
Schemas = dict[int, str | None]  # stream -> settled schema (JSON; None: none yet)
KEEP_ERRORS = 50  # a stream's recent errors kept for its page


def record_error(s: Session, sid: int, message: str, count: int = 1) -> None:
    """Count ``count`` errors of a stream, the last of them ``message`` (in the caller's
    transaction), and keep it in the stream's list of recent errors."""
    message = message[:1000]
    s.execute(
        update(IngestStream)
        .where(IngestStream.id == sid)
        .values(errors=IngestStream.errors + count, last_error=message)
    )
    s.add(IngestError(stream_id=sid, count=count, message=message))
    s.flush()
    oldest_kept = s.scalar(
        select(IngestError.id)
        .where(IngestError.stream_id == sid)
        .order_by(IngestError.id.desc())
        .offset(KEEP_ERRORS - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        s.execute(
            delete(IngestError).where(IngestError.stream_id == sid, IngestError.id < oldest_kept)
        )


def settled_schemas(db: object, sids: list[int]) -> Schemas:
    """The streams' settled schemas, as last committed (None: none yet)."""
    if not sids:
        return {}
    with db.session() as s:  # type: ignore[attr-defined]
        rows = s.execute(
            select(IngestStream.id, IngestStream.schema_json).where(IngestStream.id.in_(sids))
        ).all()
    return {sid: doc for sid, doc in rows}


def add_moved(
    s: Session, counts: Counts, errors: dict[int, str], schemas: Schemas | None = None
) -> None:
    """Count what reached the lake (in the caller's transaction), and the dataset it fills;
    ``schemas``: the settled schemas the batch moved on (only of streams in ``counts``)."""
    schemas = schemas or {}
    for sid, (records, nbytes, until) in counts.items():
        values: dict[str, object] = {
            "moved_records": IngestStream.moved_records + records,
            "moved_bytes": IngestStream.moved_bytes + nbytes,
            "moved_until": until,
        }
        if sid in errors:
            record_error(s, sid, errors[sid])
        if sid in schemas:
            values["schema_json"] = schemas[sid]
        s.execute(update(IngestStream).where(IngestStream.id == sid).values(**values))
        name, owner_id = s.execute(
            select(IngestStream.dataset, IngestStream.owner_id).where(IngestStream.id == sid)
        ).one()
        if name:
            columns = (
                {"schema_json": catalog_columns(loads(schemas[sid]))} if sid in schemas else {}
            )
            s.execute(
                update(Dataset)
                .where(Dataset.name == name, Dataset.owner_id == owner_id)
                .values(
                    row_count=Dataset.row_count + records,
                    size_bytes=Dataset.size_bytes + nbytes,
                    file_count=Dataset.file_count + 1,
                    updated_at=utcnow(),
                    **columns,
                )
            )


def stream_error(db: object, sid: int, message: str) -> None:
    try:
        with db.session() as s:  # type: ignore[attr-defined]
            record_error(s, sid, message)
    except Exception as err:
        log.warning("cannot record a stream's error: %s", err)
