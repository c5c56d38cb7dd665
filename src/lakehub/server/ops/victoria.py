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

import shutil
from typing import Any

import httpx

from lakehub.server.config import Settings
from lakehub.server.ops import scrape
from lakehub.server.ops.base import MetricsStore, OpsError, Series, StoreProcess
from lakehub.server.runtime import Runtime

TIMEOUT_S = 30.0
Only = dict[str, str] | None
Params = list[tuple[str, str | int | float | bool | None]]
CACHE_BYTES = "48MiB"  # the store's caches: its whole footprint stays well under 100 MB


def binary(name: str = "victoria-metrics") -> str | None:
    return shutil.which(name)


class VictoriaMetrics(MetricsStore):
    def __init__(self, settings: Settings, rt: Runtime, lake_metrics: bool = True) -> None:
        self.settings, self.rt, self.lake_metrics = settings, rt, lake_metrics
        self.url = f"http://127.0.0.1:{rt.ports['metrics']}"
        self.dir = settings.data_dir / "metrics"
        self._http: httpx.Client | None = None

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
    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=TIMEOUT_S)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _get(self, path: str, params: Params, only: Only) -> Any:
        params += [("extra_label", f"{k}={v}") for k, v in sorted((only or {}).items())]
        try:
            r = self.http.get(path, params=params)
        except httpx.HTTPError as err:
            raise OpsError(f"the metrics store does not answer: {err}", 503) from None
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text.strip()[:500]}
        if r.status_code >= 500:
            raise OpsError(f"the metrics store failed: {body.get('error', r.text[:200])}", 503)
        if r.status_code >= 400 or body.get("status") != "success":
            raise OpsError(_short(str(body.get("error") or r.text)), 400)
        return body["data"]

    def push(self, page: bytes, labels: dict[str, str]) -> None:
        params: Params = [("extra_label", f"{k}={v}") for k, v in sorted(labels.items())]
        try:
            self.http.post("/api/v1/import/prometheus", params=params, content=page)
            self.http.get("/internal/force_flush")  # searchable now, not at the next flush
        except httpx.HTTPError as err:
            raise OpsError(f"the metrics store does not answer: {err}", 503) from None

    def query(self, expr: str, at: float, only: dict[str, str] | None = None) -> list[Series]:
        data = self._get("/api/v1/query", [("query", expr), ("time", f"{at:.3f}")], only)
        if data["resultType"] == "scalar":
            t, v = data["result"]
            return [Series({}, [(float(t), float(v))])]
        return [
            Series(r["metric"], [(float(r["value"][0]), float(r["value"][1]))])
            for r in data["result"]
        ]

    def query_range(
        self, expr: str, start: float, end: float, step: float, only: dict[str, str] | None = None
    ) -> list[Series]:
        params: Params = [
            ("query", expr),
            ("start", f"{start:.3f}"),
            ("end", f"{end:.3f}"),
            ("step", f"{step:g}s"),
        ]
        data = self._get("/api/v1/query_range", params, only)
        return [
            Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
            for r in data["result"]
        ]


def _short(message: str) -> str:
    """The store's error without its echo of the request: the part a person can act on."""
    message = message.strip()
    if message.startswith("error when executing query=") and "): " in message:
        message = message.split("): ", 1)[1]
    return message[:500]
