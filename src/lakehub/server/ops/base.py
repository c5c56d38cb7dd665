"""The time-series store's contract, chosen by name like the lake's.

A store keeps what the scrape configuration (:mod:`.scrape`) names and answers PromQL over the
Prometheus query API. The rules every store keeps:

- ``query`` / ``query_range`` answer lists of :class:`Series`; ``query_range_json`` the same
  series with their points as JSON text, for answers that send them on as they are (a store
  that can cut them out of its answer without decoding them overrides it);
  ``query_range_json_async`` the same from an event loop (by default in a thread; a store with
  an asynchronous client overrides it, so a dashboard's panels go out at once without a thread
  each); ``query_ranges_json_async`` several expressions over one range, each one's series or
  its own refusal (by default one query each, at once; a store that can evaluate them in one
  query overrides it, and answers with the series each would get alone). A query the store refuses
  (bad PromQL, too many points) is an :class:`OpsError` with status 400 and the store's own
  message; a store that does not answer is an :class:`OpsError` with status 503.
- ``only`` restricts every series a query reads to those carrying these labels (e.g.
  ``{"user": "alice"}``), whatever the query names: the store enforces it, not the caller's
  PromQL, so a user's query cannot reach another user's series. A store that cannot enforce it
  raises ``OpsError`` (403) for any restricted query.
- ``process()`` is the component ``lakehub up`` runs for it (None: the store runs elsewhere).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson


class OpsError(RuntimeError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Series:
    """A series' labels and points: (unix seconds, value), the value written as the store
    answers it (``"0.25"``, ``"NaN"``, ``"+Inf"``: as in Prometheus' own API, since JSON has no
    NaN), so a dashboard's thousands of points go out as they came in."""

    labels: dict[str, str]
    points: list[tuple[float, str]] = field(default_factory=list)

    @property
    def last(self) -> float:
        return float(self.points[-1][1])


class SeriesJson(NamedTuple):
    """A series' labels and its points as JSON text (``[[t,"v"],...]``), as a store wrote them."""

    labels: dict[str, str]
    points: bytes


@dataclass
class StoreProcess:
    argv: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


class MetricsStore(ABC):
    @abstractmethod
    def process(self) -> list[tuple[str, StoreProcess]]:
        """The components to run for this store, by name (empty: it runs elsewhere)."""

    @abstractmethod
    def query(self, expr: str, at: float, only: dict[str, str] | None = None) -> list[Series]:
        """The instant vector of ``expr`` at ``at`` (one point per series)."""

    @abstractmethod
    def query_range(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[Series]:
        """``expr`` evaluated every ``step`` seconds from ``start`` to ``end``."""

    def query_range_json(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[SeriesJson]:
        """:meth:`query_range`'s series, their points as JSON text."""
        found = self.query_range(expr, start, end, step, only)
        return [SeriesJson(s.labels, orjson.dumps(s.points)) for s in found]

    async def query_range_json_async(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[SeriesJson]:
        """:meth:`query_range_json`, awaited."""
        return await asyncio.to_thread(self.query_range_json, expr, start, end, step, only)

    async def query_ranges_json_async(
        self,
        exprs: Sequence[str],
        start: float,
        end: float,
        step: float,
        only: dict[str, str] | None = None,
    ) -> list[list[SeriesJson] | OpsError]:
        """Each of ``exprs`` over the same range, in their order: its series, or its refusal
        (an OpsError of status 400). A store that does not answer raises (503)."""

        async def one(expr: str) -> list[SeriesJson] | OpsError:
            try:
                return await self.query_range_json_async(expr, start, end, step, only)
            except OpsError as err:
                if err.status == 503:
                    raise
                return err

        return list(await asyncio.gather(*(one(e) for e in exprs)))

    def push(self, page: bytes, labels: dict[str, str]) -> None:  # noqa: B027 (optional)
        """Store a metrics page now, as if scraped, with ``labels`` (a store that cannot takes
        nothing: its first scrape comes in its own time)."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Release connections."""


class NoStore(MetricsStore):
    """No store installed: every query says so (503), nothing runs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def process(self) -> list[tuple[str, StoreProcess]]:
        return []

    def query(self, expr: str, at: float, only: dict[str, str] | None = None) -> list[Series]:
        raise OpsError(self.reason, 503)

    def query_range(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[Series]:
        raise OpsError(self.reason, 503)
