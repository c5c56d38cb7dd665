"""The streams' counters the lake writers keep in the database (moved records, bytes, errors)."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lakehub.hub.db import Dataset, IngestStream, utcnow

log = logging.getLogger("lakehub.ingest")
Counts = dict[int, tuple[int, int, float]]  # stream -> (records, bytes, received until)


def add_moved(s: Session, counts: Counts, errors: dict[int, str]) -> None:
    """Count what reached the lake (in the caller's transaction), and the dataset it fills."""
    for sid, (records, nbytes, until) in counts.items():
        values: dict[str, object] = {
            "moved_records": IngestStream.moved_records + records,
            "moved_bytes": IngestStream.moved_bytes + nbytes,
            "moved_until": until,
        }
        if sid in errors:
            values["errors"] = IngestStream.errors + 1
            values["last_error"] = errors[sid][:1000]
        s.execute(update(IngestStream).where(IngestStream.id == sid).values(**values))
        name = s.scalar(select(IngestStream.dataset).where(IngestStream.id == sid))
        if name:
            s.execute(update(Dataset).where(Dataset.name == name).values(
                row_count=Dataset.row_count + records, size_bytes=Dataset.size_bytes
                + nbytes, file_count=Dataset.file_count + 1, updated_at=utcnow(),
            ))  # fmt: skip


def stream_error(db: object, sid: int, message: str) -> None:
    try:
        with db.session() as s:  # type: ignore[attr-defined]
            s.execute(update(IngestStream).where(IngestStream.id == sid).values(
                errors=IngestStream.errors + 1, last_error=message[:1000]))  # fmt: skip
    except Exception as err:
        log.warning("cannot record a stream's error: %s", err)
