"""A sample of every endpoint's requests and answers, in the lake, for drift analysis.

Rules: a share of requests (the setting ``serving_sample_rate``; at most ``MAX_ROWS`` per
endpoint between two writes, the rest dropped and counted) is kept in memory with its answer,
status, latency and the version that answered; every ``EVERY`` seconds each endpoint's rows are
written as one Parquet file into the endpoint's bucket, under
``serving/<endpoint>/requests/date=YYYY-MM-DD/``, with its creator's keys (so the lake's quotas
and grants hold: a write the lake refuses drops those rows, and says so in the log). After the
first write the folder is registered in the catalog as the creator's dataset
``<endpoint>-requests``, partitioned by ``date``. Bodies are kept as text up to ``MAX_BODY``
characters; binary tensors (Triton's extension) are noted by their size only. Sampling never
slows a request: it is an append to a list; writing happens on a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lakehub.server.catalog import Catalog
from lakehub.server.identity.users import UserError
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader
from lakehub.server.serving.rollouts import Route, run

log = logging.getLogger("lakehub.serving")
EVERY = 10.0
MAX_ROWS = 1000
MAX_BODY = 64 * 1024


@dataclass
class _Pending:
    rows: list[tuple[float, int, int, float, str, str]] = field(default_factory=list)
    dropped: int = 0
    registered: bool = False


class Samples:
    def __init__(self, files: ArtifactStore, catalog: Catalog, rate: float) -> None:
        self.files = files
        self.catalog = catalog
        self.rate = rate
        self._pending: dict[int, tuple[Route, _Pending]] = {}
        self._task: asyncio.Task[None] | None = None

    def offer(
        self, route: Route, version: int, status: int, seconds: float, request: bytes, answer: bytes
    ) -> None:
        if not self.rate or random.random() >= self.rate:  # noqa: S311 (a sample, not a secret)
            return
        entry = self._pending.get(route.id)
        if entry is None or entry[0] is not route:
            entry = self._pending[route.id] = (route, _Pending())
        pending = entry[1]
        if len(pending.rows) >= MAX_ROWS:
            pending.dropped += 1
            return
        pending.rows.append(
            (time.time(), version, status, seconds * 1000, _text(request), _text(answer))
        )
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._writer())

    async def _writer(self) -> None:
        while True:
            await asyncio.sleep(EVERY)
            await self.flush()

    async def flush(self) -> None:
        """Write what is pending now (each endpoint's rows in one file)."""
        for route, pending in list(self._pending.values()):
            if not pending.rows:
                continue
            rows, pending.rows = pending.rows, []
            if pending.dropped:
                log.info("endpoint %s: %d sampled requests dropped", route.name, pending.dropped)
                pending.dropped = 0
            try:
                await run(self._write, route, pending, rows)
            except Exception as err:  # noqa: BLE001 (a sample lost is logged, never raised)
                log.warning(
                    "endpoint %s: %d sampled requests not written: %s", route.name, len(rows), err
                )

    def _write(self, route: Route, pending: _Pending, rows: list[Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        times, versions, codes, millis, requests, answers = zip(*rows, strict=True)
        table = pa.table(
            {
                "time": pa.array(
                    [datetime.fromtimestamp(t, UTC) for t in times], pa.timestamp("ms", tz="UTC")
                ),
                "version": pa.array(versions, pa.int32()),
                "status": pa.array(codes, pa.int16()),
                "latency_ms": pa.array(millis, pa.float64()),
                "request": pa.array(requests, pa.string()),
                "answer": pa.array(answers, pa.string()),
            }
        )
        out = io.BytesIO()
        pq.write_table(table, out)
        out.seek(0)
        day = datetime.fromtimestamp(times[0], UTC).strftime("%Y-%m-%d")
        folder = f"serving/{route.name}/requests/"
        key = f"{folder}date={day}/{int(times[0] * 1000)}-{secrets.token_hex(4)}.parquet"
        who = Reader(route.creator)
        try:
            self.files.put(who, route.bucket, key, out)
        except ModelsError as err:
            raise RuntimeError(str(err)) from None
        if not pending.registered:
            name = f"{route.name}-requests"
            try:
                self.catalog.register(
                    name,
                    f"s3://{route.bucket}/{folder}",
                    "parquet",
                    route.creator,
                    partitioning=["date"],
                    description=f"A sample of the requests endpoint {route.name} answered, "
                    "with its answers (LakeHub writes it)",
                    tags=["serving", "requests"],
                )
            except UserError as err:
                if err.status != 409:  # taken by an earlier run of the endpoint: it is ours
                    log.warning("endpoint %s: dataset %s not registered: %s", route.name, name, err)
            pending.registered = True


def _text(body: bytes) -> str:
    if b"\x00" in body[:MAX_BODY]:
        return f"(binary, {len(body)} bytes)"
    text = body[:MAX_BODY].decode("utf-8", "replace")
    return text if len(body) <= MAX_BODY else text + f"... ({len(body)} bytes)"
