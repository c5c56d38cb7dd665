"""The embedded store: VictoriaMetrics' single-node binary (Debian's ``victoria-metrics``).

It scrapes what :mod:`.scrape` lists, keeps ``metrics_retention`` of samples (one per
``metrics_resolution`` seconds when set: its deduplication is the downsampling open-source
VictoriaMetrics has), and answers PromQL. When ``metrics_remote_write`` names other stores,
``vmagent`` scrapes instead and writes every sample to them and to the local store (queued on
disk while one is away).

``only`` is enforced with VictoriaMetrics' ``extra_label`` query argument: the store adds the
label filters to every series selector of the query, whatever it says.

Fresh samples are visible after one second (``-search.latencyOffset``; its default of 30 s
would hide the last half-minute from dashboards and alerts).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import shutil
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import httptools
import orjson

from lakehub.server.config import Settings
from lakehub.server.ops import scrape
from lakehub.server.ops.base import (
    MetricsStore,
    NoStore,
    OpsError,
    Series,
    SeriesJson,
    StoreProcess,
)
from lakehub.server.runtime import Runtime

TIMEOUT_S = 30.0
Only = dict[str, str] | None
Params = list[tuple[str, str | int | float | bool | None]]
IDLE_MAX = 8  # kept-alive connections, per kind (threads', event loops')
TAG = "lakehub_query"  # the label that tells a batched query's parts apart
MAX_QUERY = 16_000  # characters of a batched query (the store refuses past 16 KiB)
CACHE_BYTES = "48MiB"  # the store's caches: its whole footprint stays well under 100 MB


def binary(name: str = "victoria-metrics") -> str | None:
    return shutil.which(name)


class VictoriaMetrics(MetricsStore):
    def __init__(self, settings: Settings, rt: Runtime, lake_metrics: bool = True) -> None:
        self.settings, self.rt, self.lake_metrics = settings, rt, lake_metrics
        self.port = rt.ports["metrics"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = settings.data_dir / "metrics"
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._aidle: list[
            tuple[asyncio.AbstractEventLoop, asyncio.StreamReader, asyncio.StreamWriter]
        ] = []

    # the components --------------------------------------------------------------------------
    def process(self) -> list[tuple[str, StoreProcess]]:
        s = self.settings
        self.dir.mkdir(parents=True, exist_ok=True)
        config = scrape.write(self.dir / "scrape.json", s, self.rt, self.lake_metrics)
        stale = max(3 * s.metrics_interval, 2 * s.metrics_resolution)
        argv = [
            binary() or "victoria-metrics",
            f"-storageDataPath={self.dir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.rt.ports['metrics']}",
            f"-retentionPeriod={s.metrics_retention}",
            "-search.latencyOffset=1s",
            # a series not scraped for three intervals is gone: a stopped hub's last values
            # (a component seen down while it stopped) do not fire alerts in the next one
            f"-search.maxStalenessInterval={stale}s",
            f"-memory.allowedBytes={CACHE_BYTES}",
            "-loggerLevel=WARN",
            "-promscrape.suppressScrapeErrors",
        ]
        if s.metrics_resolution:
            argv.append(f"-dedup.minScrapeInterval={s.metrics_resolution}s")
        store = StoreProcess(argv, self.url + "/health", cwd=self.dir)
        if not s.metrics_remote_write:
            store.argv.append(f"-promscrape.config={config}")
            return [("metrics", store)]
        agent = StoreProcess(
            [
                binary("vmagent") or "vmagent",
                f"-promscrape.config={config}",
                f"-httpListenAddr=127.0.0.1:{self.rt.ports['metrics_agent']}",
                f"-remoteWrite.tmpDataPath={self.dir / 'queue'}",
                f"-remoteWrite.url={self.url}/api/v1/write",
                *(f"-remoteWrite.url={u}" for u in s.metrics_remote_write),
                "-loggerLevel=WARN",
                "-promscrape.suppressScrapeErrors",
            ],
            f"http://127.0.0.1:{self.rt.ports['metrics_agent']}/health",
            cwd=self.dir,
        )
        return [("metrics", store), ("metrics-agent", agent)]

    # queries ---------------------------------------------------------------------------------
    # Kept-alive connections shared by the threads that query (taken, used, given back; at
    # most IDLE_MAX kept), plain http.client: a dashboard sends its panels' queries at once
    # from a few threads, and a heavier client's own work per request would cost more than the
    # store's answer. Answers are not compressed (the store is local). Threads come and go
    # (the event loop's workers), so a connection is not a thread's: it would outlive it.
    # From an event loop (a dashboard's panels, all at once), asyncio streams and httptools'
    # parser over connections kept per loop: ~2 ms less for the overview than a thread each.
    def _new(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)

    def _call(self, method: str, path: str, params: Params, body: bytes | None = None) -> Any:
        url = f"{path}?{urlencode(params)}"
        for attempt in (1, 2):  # a kept-alive connection the store closed: once more, afresh
            with self._lock:
                conn = self._idle.pop() if self._idle and attempt == 1 else None
            conn = conn or self._new()
            try:
                conn.request(method, url, body=body, headers={"Accept-Encoding": "identity"})
                r = conn.getresponse()
                answer = r.status, r.read()
            except (http.client.HTTPException, OSError) as err:
                conn.close()
                if attempt == 2:
                    raise OpsError(f"the metrics store does not answer: {err}", 503) from None
                continue
            with self._lock:
                kept = len(self._idle) < IDLE_MAX
                if kept:
                    self._idle.append(conn)
            if not kept:
                conn.close()
            return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Closes the kept-alive connections (a later query opens one again); the event loops'
        ones by their loops, which must still run."""
        with self._lock:
            idle, self._idle = self._idle, []
            aidle, self._aidle = self._aidle, []
        for conn in idle:
            conn.close()
        for loop, _, writer in aidle:
            with contextlib.suppress(RuntimeError):  # its loop has ended
                loop.call_soon_threadsafe(writer.close)

    def _answer(self, path: str, params: Params, only: Only) -> bytes:
        """The store's answer to a query as it wrote it; a refusal is an OpsError."""
        return _checked(*self._call("GET", path, _restricted(params, only)))

    def _get(self, path: str, params: Params, only: Only) -> Any:
        return orjson.loads(self._answer(path, params, only))["data"]

    def push(self, page: bytes, labels: dict[str, str]) -> None:
        params: Params = [("extra_label", f"{k}={v}") for k, v in sorted(labels.items())]
        self._call("POST", "/api/v1/import/prometheus", params, page)
        self._call("GET", "/internal/force_flush", [])  # searchable now, not at the next flush

    def query(self, expr: str, at: float, only: dict[str, str] | None = None) -> list[Series]:
        data = self._get("/api/v1/query", [("query", expr), ("time", f"{at:.3f}")], only)
        if data["resultType"] == "scalar":
            t, v = data["result"]
            return [Series({}, [(float(t), str(v))])]
        return [Series(r["metric"], [(r["value"][0], r["value"][1])]) for r in data["result"]]

    def query_range(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[Series]:
        data = self._get("/api/v1/query_range", _range(expr, start, end, step), only)
        return [Series(r["metric"], r["values"]) for r in data["result"]]

    def query_range_json(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[SeriesJson]:
        return _series(self._answer("/api/v1/query_range", _range(expr, start, end, step), only))

    async def query_range_json_async(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[SeriesJson]:
        params = _restricted(_range(expr, start, end, step), only)
        return _series(_checked(*await self._acall(f"/api/v1/query_range?{urlencode(params)}")))

    async def query_ranges_json_async(
        self,
        exprs: Sequence[str],
        start: float,
        end: float,
        step: float,
        only: dict[str, str] | None = None,
    ) -> list[list[SeriesJson] | OpsError]:
        """All of ``exprs`` in one MetricsQL query, ``union`` of each one's series tagged with
        its place (``label_set``), cut apart again by that tag: one round trip, the parts
        evaluated by the store at once, faster than the same queries sent together (measured
        in ``bench/ops.py``). Refused as a whole (one expression is bad PromQL), or too long
        together, the expressions are asked one by one, so each refusal is its own."""
        query = union_of(exprs)
        if len(exprs) < 2 or len(query) > MAX_QUERY:
            return await super().query_ranges_json_async(exprs, start, end, step, only)
        try:
            found = await self.query_range_json_async(query, start, end, step, only)
        except OpsError as err:
            if err.status == 503:
                raise
            return await super().query_ranges_json_async(exprs, start, end, step, only)
        parts: list[list[SeriesJson]] = [[] for _ in exprs]
        for labels, points in found:
            parts[int(labels.pop(TAG))].append(SeriesJson(labels, points))
        return [*parts]

    async def _acall(self, url: str) -> tuple[int, bytes]:
        """GET ``url`` from the event loop over a kept-alive connection of this loop's."""
        loop = asyncio.get_running_loop()
        request = f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n"
        for attempt in (1, 2):  # a kept-alive connection the store closed: once more, afresh
            with self._lock:  # (a closed loop's are dropped: their sockets ended with it)
                self._aidle = [c for c in self._aidle if not c[0].is_closed()]
                kept = [c for c in self._aidle if c[0] is loop]
                conn = kept[-1] if kept and attempt == 1 else None
                if conn is not None:
                    self._aidle.remove(conn)
            try:
                if conn is None:
                    opened = asyncio.open_connection("127.0.0.1", self.port)
                    conn = (loop, *await asyncio.wait_for(opened, TIMEOUT_S))
                exchange = _exchange(conn[1], conn[2], request.encode())
                status, body, keep = await asyncio.wait_for(exchange, TIMEOUT_S)
            except (OSError, TimeoutError, httptools.HttpParserError) as err:
                if conn is not None:
                    conn[2].close()
                if attempt == 2:
                    raise OpsError(f"the metrics store does not answer: {err!r}", 503) from None
                continue
            except BaseException:  # cancelled (the caller went away): the exchange is cut
                if conn is not None:
                    conn[2].close()
                raise
            with self._lock:
                keep = keep and len(self._aidle) < IDLE_MAX
                if keep:
                    self._aidle.append(conn)
            if not keep:
                conn[2].close()
            return status, body
        raise AssertionError("unreachable")


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes, bool]:
    """One request and its whole answer (length-delimited or chunked): status, body, and
    whether the connection may be used again."""
    parts: list[bytes] = []
    keep: list[bool] = []  # asked as the answer ends (the parser forgets it after)

    class Answer:
        def on_body(self, body: bytes) -> None:
            parts.append(body)

        def on_message_complete(self) -> None:
            keep.append(parser.should_keep_alive())

    parser = httptools.HttpResponseParser(Answer())
    writer.write(request)
    while not keep:
        data = await reader.read(1 << 18)
        if not data:
            raise ConnectionResetError("the store closed the connection")
        parser.feed_data(data)
    return parser.get_status_code(), b"".join(parts), keep[0]


def union_of(exprs: Sequence[str]) -> str:
    """One MetricsQL query answering every one of ``exprs``, each series tagged with the place
    of the expression it answers (label ``TAG``)."""
    tagged = ",".join(f'label_set({e}, "{TAG}", "{i}")' for i, e in enumerate(exprs))
    return f"union({tagged})"


def _series(raw: bytes) -> list[SeriesJson]:
    found = split_matrix(raw)
    if found is None:  # a layout split_matrix does not read: decoded whole
        result = orjson.loads(raw)["data"]["result"]
        return [SeriesJson(r["metric"], orjson.dumps(r["values"])) for r in result]
    return found


def _restricted(params: Params, only: Only) -> Params:
    return params + [("extra_label", f"{k}={v}") for k, v in sorted((only or {}).items())]


def _checked(status: int, raw: bytes) -> bytes:
    """A query's answer, as the store wrote it; a refusal is an OpsError."""
    if status < 400 and raw.startswith(b'{"status":"success"'):
        return raw  # not decoded here: a dashboard's points may go out as they are
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = {"error": raw.decode(errors="replace").strip()[:500]}
    if status >= 500:
        raise OpsError(f"the metrics store failed: {body.get('error', '')[:200]}", 503)
    if status >= 400 or body.get("status") != "success":
        raise OpsError(_short(str(body.get("error") or raw[:500])), 400)
    return raw


def _range(expr: str, start: float, end: float, step: float) -> Params:
    return [
        ("query", expr),
        ("start", f"{start:.3f}"),
        ("end", f"{end:.3f}"),
        ("step", f"{step:g}s"),
    ]


# the heads of a range answer: Debian's 1.79, and later versions' ("isPartial" added)
MATRIX = tuple(
    b'{"status":"success",%s"data":{"resultType":"matrix","result":[' % partial
    for partial in (b"", b'"isPartial":false,')
)
SERIES, VALUES = b'{"metric":{', b'},"values":'


def split_matrix(raw: bytes) -> list[SeriesJson] | None:
    """A range query's answer, as VictoriaMetrics writes it, cut into its series without
    decoding their points: each series' labels (decoded) and its points' JSON text. None when
    the answer is not in exactly that layout (the caller then decodes it whole).

    The cuts are exact: every separator holds a quote, and inside a JSON string a quote is
    always escaped, so no label name or value can contain one."""
    head = next((h for h in MATRIX if raw.startswith(h)), None)
    if head is None:
        return None
    body = raw[len(head) :]
    end = body.rfind(b']},"stats":{')
    if end < 0 and body.endswith(b"]}}"):
        end = len(body) - 3
    if end < 0:
        return None
    result = body[:end]
    if not result:
        return []
    if not result.startswith(SERIES):
        return None
    found = []
    for part in result[len(SERIES) :].split(b"," + SERIES):
        cut = part.find(VALUES)
        points = part[cut + len(VALUES) : -1]
        if cut < 0 or not part.endswith(b"]}") or not points.startswith(b"["):
            return None
        found.append(SeriesJson(orjson.loads(b"{" + part[: cut + 1]), points))
    return found


def _short(message: str) -> str:
    """The store's error without its echo of the request: the part a person can act on."""
    message = message.strip()
    if message.startswith("error when executing query=") and "): " in message:
        message = message.split("): ", 1)[1]
    return message[:500]


def open_store(settings: Settings, rt: Runtime, lake_metrics: bool = True) -> MetricsStore:
    """The embedded store, or why there is none (``lake_metrics``: the lake runs here and has
    a metrics page)."""
    if not settings.metrics:
        return NoStore("monitoring is off (the setting 'metrics' is false)")
    if binary() is None:
        return NoStore(
            "the metrics store is not installed: install Debian's victoria-metrics "
            "(./dev up does) and restart the hub"
        )
    return VictoriaMetrics(settings, rt, lake_metrics)
