"""Dashboards as data: ``dashboards.yaml`` names each dashboard, who sees it and its panels.

A dashboard's ``audience`` is ``admin`` (administrators only) or ``own`` (everyone, and every
query of it restricted to the viewer's series: the label ``user`` is the viewer's, enforced by
the store, administrators included: it is *my* dashboard). A panel is a title, a PromQL
expression, a legend (``{label}`` replaced per series), a unit (bytes, seconds, percent, count,
cores, persec) and a kind: ``line`` (a time series) or ``stat`` (its latest value, large).

:func:`load` checks every field when the control plane starts, so a broken dashboard fails
the start and a test, not a page; :meth:`Board.data` runs a dashboard's panels at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from lakehub.server.ops.base import MetricsStore, OpsError

DASHBOARDS = Path(__file__).with_name("dashboards.yaml")
UNITS = ("bytes", "seconds", "percent", "count", "cores", "persec")
KINDS = ("line", "stat")
AUDIENCES = ("admin", "own")
MAX_POINTS = 480  # per series: a step at least range / MAX_POINTS
MAX_SERIES = 50  # per panel: more are cut, and the panel says so


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    legend: str
    unit: str
    kind: str


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    audience: str
    description: str
    panels: tuple[Panel, ...]

    def visible_to(self, admin: bool) -> bool:
        return admin or self.audience == "own"

    def restriction(self, viewer: str) -> dict[str, str] | None:
        return {"user": viewer} if self.audience == "own" else None

    async def data(
        self,
        store: MetricsStore,
        viewer: str,
        start: float,
        end: float,
        interval: float,
        as_json: bool = False,
    ) -> list[dict[str, Any]]:
        """Every panel's series over [start, end], queried together (in one query where the
        store can). ``as_json``: each series' points as the store wrote them
        (``orjson.Fragment``), for an answer that sends them on; else decoded
        (``[[t, "v"], ...]``). A panel the store refuses carries its error; the others draw."""
        step = step_for(end - start, interval)
        exprs = [p.expr for p in self.panels]
        answers = await store.query_ranges_json_async(
            exprs, start, end, step, self.restriction(viewer)
        )
        points = orjson.Fragment if as_json else orjson.loads
        out = []
        for p, answer in zip(self.panels, answers, strict=True):
            panel: dict[str, Any] = {"title": p.title, "unit": p.unit, "kind": p.kind}
            if isinstance(answer, OpsError):
                out.append({**panel, "series": [], "error": str(answer)})
                continue
            named = sorted(
                ((legend(p.legend, s.labels), s.points) for s in answer), key=lambda n: n[0]
            )
            panel["series"] = [{"name": n, "points": points(pts)} for n, pts in named[:MAX_SERIES]]
            panel["cut"] = max(0, len(named) - MAX_SERIES)
            out.append(panel)
        return out


def step_for(span: float, interval: float) -> float:
    """Seconds between points: at least the scrape interval, at most MAX_POINTS per series."""
    return float(max(interval, math.ceil(span / MAX_POINTS)))


class _Blank(dict[str, str]):
    """Labels where a missing one reads as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def legend(template: str, labels: dict[str, str]) -> str:
    if not template:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
    return template.format_map(_Blank(labels)) or "(none)"


def load(path: Path = DASHBOARDS) -> dict[str, Board]:
    """Every dashboard of ``path``, checked; a bad field is a ValueError naming where."""
    boards = {}
    for name, raw in (yaml.safe_load(path.read_text()) or {}).items():
        where = f"{path.name}: dashboard {name}"
        if raw.get("audience") not in AUDIENCES:
            raise ValueError(f"{where}: audience must be one of {', '.join(AUDIENCES)}")
        panels = []
        for i, p in enumerate(raw.get("panels") or []):
            at = f"{where}, panel {i + 1}"
            if not p.get("title") or not p.get("expr"):
                raise ValueError(f"{at}: title and expr are needed")
            if p.get("unit", "count") not in UNITS or p.get("kind", "line") not in KINDS:
                raise ValueError(f"{at}: unit one of {UNITS}, kind one of {KINDS}")
            panels.append(
                Panel(
                    p["title"],
                    p["expr"],
                    p.get("legend", ""),
                    p.get("unit", "count"),
                    p.get("kind", "line"),
                )
            )
        if not panels:
            raise ValueError(f"{where}: no panels")
        boards[name] = Board(
            name, raw.get("title", name), raw["audience"], raw.get("description", ""), tuple(panels)
        )
    return boards
