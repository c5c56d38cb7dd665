"""Types the areas' models share with the API document (the areas may import this module; the
web layer's :mod:`lakehub.server.web.schema` builds on it).

Rules: every time in a model carries its offset (``Instant``: the database keeps naive UTC, a
model holds it as UTC and answers say ``...Z``); integers stored in the database stay within its
INTEGER and BIGINT columns (``INT32``, ``INT64``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

INT32 = 2**31 - 1  # the bounds of the database's INTEGER and BIGINT columns
INT64 = 2**63 - 1


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Instant = Annotated[datetime, AfterValidator(_utc)]


def from_ms(ms: int) -> datetime:
    """Milliseconds since the epoch (as MLflow and the serving tables keep times), in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def from_ms_or_none(ms: int | None) -> datetime | None:
    """:func:`from_ms` of a time that may not be there yet (an end, a revocation)."""
    return None if ms is None else from_ms(ms)


def to_ms(at: datetime) -> int:
    """:func:`from_ms`'s inverse; a time without an offset is taken as UTC."""
    return int(_utc(at).timestamp() * 1000)


def now_ms() -> int:
    """Now, in milliseconds since the epoch (how the areas' tables keep times)."""
    return int(time.time() * 1000)
