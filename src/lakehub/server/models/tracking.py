"""Experiments, runs and logged models, answered in MLflow's own shapes (dicts its REST API
returns). Every call takes the caller's :class:`Access`: what they cannot read does not exist for
them, what they may only read they cannot change.

Artifacts of experiment ``7`` are ``mlflow-artifacts:/7/...``: the files ``mlflow/7/...`` in the
experiment's bucket. Experiment ``0`` is each caller's own "Default" (MLflow's client uses it
when told nothing), made on first use.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, and_, func, insert, select
from sqlalchemy.orm import Session, aliased

from lakehub.server.db import Database
from lakehub.server.models import search
from lakehub.server.models.base import ModelsError, Reader, missing
from lakehub.server.models.owners import Access, owner_of
from lakehub.server.models.tables import (
    Experiment,
    LatestMetric,
    LoggedModel,
    Metric,
    Param,
    Run,
    RunTag,
    Trash,
)
from lakehub.server.schema import now_ms

DEFAULT_EXPERIMENT = "Default"
ARTIFACTS = "mlflow-artifacts:/"
KEY_PREFIX = "mlflow/"
MAX_RESULTS = 50_000
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
KEY_RE = re.compile(r"^[\w\-./ :]{1,250}$")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
WORDS = ("bright", "calm", "eager", "keen", "quiet", "swift", "bold", "clever", "gentle", "brave")
ANIMALS = ("otter", "heron", "lynx", "finch", "mole", "seal", "crane", "hare", "wren", "newt")


def _key(key: str, what: str) -> str:
    if not isinstance(key, str) or not KEY_RE.match(key) or ".." in key.split("/"):
        raise ModelsError(
            f"invalid {what} name {key!r}: up to 250 letters, digits, _ - . / : space"
        )
    return key


def _tags_in(items: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    return {_key(str(t.get("key", "")), "tag"): str(t.get("value", "")) for t in items or ()}


def _tags_out(raw: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in json.loads(raw).items()]


class Tracking:
    def __init__(self, db: Database, grace_ms: int = 0) -> None:
        self.db = db
        self.grace_ms = grace_ms  # a deleted logged model's files stay this long

    # experiments ---------------------------------------------------------------------------
    def _experiment(
        self, s: Session, a: Access, experiment_id: str, write: bool = False
    ) -> Experiment:
        if str(experiment_id) == "0":
            return self._default(s, a)
        try:
            row = s.get(Experiment, int(experiment_id))
        except (TypeError, ValueError):
            row = None
        if row is None or not a.can_read(row.bucket):
            raise missing(f"experiment {experiment_id!r}")
        if write:
            a.check_write(row.bucket, f"experiment {experiment_id!r}")
        return row

    def _default(self, s: Session, a: Access) -> Experiment:
        bucket = f"{a.who.name}-home"
        row = s.scalar(
            select(Experiment).where(
                Experiment.bucket == bucket, Experiment.name == DEFAULT_EXPERIMENT
            )
        )
        if row is None:
            row = self._add_experiment(s, a, bucket, DEFAULT_EXPERIMENT, {})
        return row

    def _add_experiment(
        self, s: Session, a: Access, bucket: str, name: str, tags: dict[str, str]
    ) -> Experiment:
        t = now_ms()
        row = Experiment(
            bucket=bucket,
            name=name,
            creator=a.who.name,
            tags=json.dumps(tags),
            created_ms=t,
            updated_ms=t,
        )
        s.add(row)
        s.flush()
        return row

    def experiment_json(self, a: Access, row: Experiment) -> dict[str, Any]:
        return {
            "experiment_id": str(row.id),
            "name": a.shown(row.bucket, row.name),
            "artifact_location": f"{ARTIFACTS}{row.id}",
            "lifecycle_stage": row.lifecycle,
            "creation_time": row.created_ms,
            "last_update_time": row.updated_ms,
            "tags": _tags_out(row.tags),
        }

    def create_experiment(self, who: Reader, name: str, tags: list[dict[str, Any]] | None) -> str:
        if not name or not name.strip():
            raise ModelsError("an experiment needs a name")
        with self.db.session() as s:
            a = Access.of(s, who)
            bucket, bare = a.target(name.strip(), "experiment")
            if len(bare) > 256:
                raise ModelsError("experiment names have at most 256 characters")
            if s.scalar(
                select(Experiment.id).where(Experiment.bucket == bucket, Experiment.name == bare)
            ):
                raise ModelsError(f"experiment {name!r} already exists", "RESOURCE_ALREADY_EXISTS")
            return str(self._add_experiment(s, a, bucket, bare, _tags_in(tags)).id)

    def get_experiment(self, who: Reader, experiment_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            return self.experiment_json(a, self._experiment(s, a, experiment_id))

    def experiment_by_name(self, who: Reader, name: str) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            buckets, bare = a.candidates(name)
            rows = s.scalars(
                select(Experiment).where(Experiment.bucket.in_(buckets), Experiment.name == bare)
            ).all()
            if not rows and bare == DEFAULT_EXPERIMENT and "." not in name:
                rows = [self._default(s, a)]
            mine = [r for r in rows if r.bucket == buckets[0]] or list(rows)
            if len(mine) != 1:
                if not mine:
                    raise missing(f"experiment {name!r}")
                names = ", ".join(sorted(a.shown(r.bucket, r.name) for r in mine))
                raise ModelsError(f"several experiments are called {name!r} ({names}): say which")
            return self.experiment_json(a, mine[0])

    def search_experiments(
        self,
        who: Reader,
        view_type: str,
        filter_: str | None,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        q = select(Experiment)
        for c in search.parse_filter(filter_):
            if c.kind == "tag":
                raise ModelsError("experiments are searched by name here, not by tag")
            if c.key != "name":
                raise ModelsError(f"experiments cannot be searched by {c.key!r}")
            q = q.where(_compare(Experiment.name, c))
        q = q.where(_lifecycle(Experiment.lifecycle, view_type))
        order: list[Any] = []
        for kind, key, asc in search.parse_order(order_by):
            col = {
                "name": Experiment.name,
                "creation_time": Experiment.created_ms,
                "last_update_time": Experiment.updated_ms,
                "experiment_id": Experiment.id,
            }.get(key)
            if col is None or kind != "attr":
                raise ModelsError(f"experiments cannot be ordered by {key!r}")
            order.append(col.asc() if asc else col.desc())
        q = q.order_by(*(order or [Experiment.updated_ms.desc()]), Experiment.id)
        with self.db.session() as s:
            a = Access.of(s, who)
            readable = a.readable()
            if readable is not None:
                q = q.where(Experiment.bucket.in_(readable))
            rows, token = _page(s, q, max_results, page_token)
            return [self.experiment_json(a, r) for r in rows], token

    def update_experiment(self, who: Reader, experiment_id: str, new_name: str) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            row = self._experiment(s, a, experiment_id, write=True)
            bucket, bare = a.target(new_name, "experiment")
            if bucket != row.bucket:
                raise ModelsError("an experiment keeps its owner when renamed")
            if s.scalar(
                select(Experiment.id).where(Experiment.bucket == bucket, Experiment.name == bare)
            ):
                raise ModelsError(
                    f"experiment {new_name!r} already exists", "RESOURCE_ALREADY_EXISTS"
                )
            row.name, row.updated_ms = bare, now_ms()

    def set_experiment_lifecycle(self, who: Reader, experiment_id: str, deleted: bool) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            row = self._experiment(s, a, experiment_id, write=True)
            row.lifecycle = "deleted" if deleted else "active"
            row.deleted_ms = now_ms() if deleted else None
            row.updated_ms = now_ms()

    def set_experiment_tag(self, who: Reader, experiment_id: str, key: str, value: str) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            row = self._experiment(s, a, experiment_id, write=True)
            tags = json.loads(row.tags)
            tags[_key(key, "tag")] = str(value)
            row.tags, row.updated_ms = json.dumps(tags), now_ms()

    def overview(self, who: Reader) -> list[dict[str, Any]]:
        """Every active experiment the caller may read, with its run count and last run."""
        with self.db.session() as s:
            a = Access.of(s, who)
            q = select(Experiment).where(Experiment.lifecycle == "active")
            readable = a.readable()
            if readable is not None:
                q = q.where(Experiment.bucket.in_(readable))
            rows = s.scalars(q.order_by(Experiment.updated_ms.desc())).all()
            stats = s.execute(
                select(Run.experiment_id, func.count(), func.max(Run.start_ms))
                .where(Run.experiment_id.in_([r.id for r in rows]), Run.lifecycle == "active")
                .group_by(Run.experiment_id)
            )
            counts = {e: (n, t) for e, n, t in stats}
            out = []
            for r in rows:
                n, last = counts.get(r.id, (0, None))
                out.append(
                    {
                        **self.experiment_json(a, r),
                        "runs": n,
                        "last_run": last,
                        "owner": owner_of(r.bucket),
                        "access": a.level(r.bucket),
                    }
                )
            return sorted(out, key=lambda e: -(e["last_run"] or e["last_update_time"]))

    def keys(self, who: Reader, experiment_id: str) -> tuple[list[str], list[str]]:
        """The metric and parameter names the experiment's runs have (for a table's columns)."""
        with self.db.session() as s:
            a = Access.of(s, who)
            exp = self._experiment(s, a, experiment_id)
            runs = select(Run.id).where(Run.experiment_id == exp.id)
            metrics = s.scalars(
                select(LatestMetric.key)
                .where(LatestMetric.run_id.in_(runs))
                .distinct()
                .order_by(LatestMetric.key)
                .limit(200)
            ).all()
            params = s.scalars(
                select(Param.key)
                .where(Param.run_id.in_(runs))
                .distinct()
                .order_by(Param.key)
                .limit(200)
            ).all()
            return list(metrics), list(params)

    def histories(self, who: Reader, run_ids: list[str]) -> dict[str, dict[str, list[list[Any]]]]:
        """Every metric's history of each run: run -> key -> [[step...], [value...]]."""
        out: dict[str, dict[str, list[list[Any]]]] = {}
        with self.db.session() as s:
            a = Access.of(s, who)
            ids = [self._run(s, a, r)[0].id for r in run_ids]
            q = (
                select(Metric)
                .where(Metric.run_id.in_(ids))
                .order_by(Metric.run_id, Metric.key, Metric.step, Metric.timestamp, Metric.id)
            )
            for m in s.scalars(q):
                steps, values = out.setdefault(m.run_id, {}).setdefault(m.key, [[], []])
                steps.append(m.step)
                values.append(m.value if m.value is not None and math.isfinite(m.value) else None)
        return out

    # runs ----------------------------------------------------------------------------------
    def _run(
        self, s: Session, a: Access, run_id: str, write: bool = False
    ) -> tuple[Run, Experiment]:
        run = s.get(Run, str(run_id or ""))
        exp = self._parent(s, a, run, f"run {run_id!r}", write)
        assert run is not None
        if write and run.lifecycle == "deleted":
            raise ModelsError(f"run {run_id!r} is deleted: restore it first")
        return run, exp

    def create_run(
        self,
        who: Reader,
        experiment_id: str,
        run_name: str | None,
        start_time: int | None,
        tags: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        given = _tags_in(tags)
        name = (
            run_name
            or given.get("mlflow.runName")
            or (f"{secrets.choice(WORDS)}-{secrets.choice(ANIMALS)}-{secrets.randbelow(1000)}")
        )
        given["mlflow.runName"] = name
        given["mlflow.user"] = who.name  # who ran it is who asked, not what the body says
        with self.db.session() as s:
            a = Access.of(s, who)
            exp = self._experiment(s, a, experiment_id or "0", write=True)
            if exp.lifecycle != "active":
                raise ModelsError(f"experiment {experiment_id!r} is deleted: restore it first")
            run = Run(
                id=secrets.token_hex(16),
                experiment_id=exp.id,
                name=name[:256],
                creator=who.name,
                start_ms=int(start_time or now_ms()),
            )
            s.add(run)
            s.flush()
            s.add_all(
                RunTag(run_id=run.id, key=k, value=v[:MAX_TAG_VALUE]) for k, v in given.items()
            )
            s.flush()
            return self._runs_json(s, a, [(run, exp)])[0]

    def get_run(self, who: Reader, run_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            return self._runs_json(s, a, [self._run(s, a, run_id)])[0]

    def update_run(
        self, who: Reader, run_id: str, status: str | None, end_time: int | None, name: str | None
    ) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            run, exp = self._run(s, a, run_id, write=True)
            if status:
                if status not in RUN_STATUSES:
                    raise ModelsError(f"status must be one of {', '.join(RUN_STATUSES)}")
                run.status = status
            if end_time:
                run.end_ms = int(end_time)
            if name:
                run.name = name[:256]
                s.merge(RunTag(run_id=run.id, key="mlflow.runName", value=name[:MAX_TAG_VALUE]))
            return self._run_info(run, exp)

    def set_run_lifecycle(self, who: Reader, run_id: str, deleted: bool) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            run, exp = self._run(s, a, run_id)
            a.check_write(exp.bucket, f"run {run_id!r}")
            run.lifecycle = "deleted" if deleted else "active"
            run.deleted_ms = now_ms() if deleted else None

    def log_batch(
        self,
        who: Reader,
        run_id: str,
        metrics: list[dict[str, Any]] | None = None,
        params: list[dict[str, Any]] | None = None,
        tags: list[dict[str, Any]] | None = None,
    ) -> None:
        metrics, params, tags = metrics or [], params or [], tags or []
        if len(metrics) > 1000 or len(params) > 100 or len(tags) > 100:
            raise ModelsError("a batch holds at most 1000 metrics, 100 params and 100 tags")
        with self.db.session() as s:
            a = Access.of(s, who)
            run, _ = self._run(s, a, run_id, write=True)
            self._params(s, run.id, params)
            for k, v in _tags_in(tags).items():
                if k == "mlflow.user":
                    continue  # set by the server
                s.merge(RunTag(run_id=run.id, key=k, value=v[:MAX_TAG_VALUE]))
                if k == "mlflow.runName":
                    run.name = v[:256]
            self._metrics(s, run.id, metrics)

    def _params(self, s: Session, run_id: str, params: list[dict[str, Any]]) -> None:
        if not params:
            return
        given: dict[str, str] = {}
        for p in params:
            key, value = _key(str(p.get("key", "")), "param"), str(p.get("value", ""))
            if len(value) > MAX_PARAM_VALUE:
                raise ModelsError(f"param {key!r} is longer than {MAX_PARAM_VALUE} characters")
            if given.get(key, value) != value:
                raise ModelsError(f"param {key!r} given twice with different values")
            given[key] = value
        had = dict(
            s.execute(
                select(Param.key, Param.value).where(Param.run_id == run_id, Param.key.in_(given))
            )
            .tuples()
            .all()
        )
        for key, value in given.items():
            if key in had and had[key] != value:
                raise ModelsError(
                    f"param {key!r} was already logged as {had[key]!r}: params cannot change "
                    f"(tried {value!r})"
                )
            if key not in had:
                s.add(Param(run_id=run_id, key=key, value=value))

    def _metrics(self, s: Session, run_id: str, metrics: list[dict[str, Any]]) -> None:
        """Append to the history in one statement; move each key's last value when a newer
        step (then time) comes."""
        if not metrics:
            return
        rows: list[dict[str, Any]] = []
        for m in metrics:
            try:
                value = float(m.get("value"))  # type: ignore[arg-type]
                row: dict[str, Any] = {
                    "run_id": run_id,
                    "key": _key(str(m.get("key", "")), "metric"),
                    "value": value,
                    "timestamp": int(m.get("timestamp") or now_ms()),
                    "step": int(m.get("step") or 0),
                }
            except (TypeError, ValueError):
                raise ModelsError(f"metric {m.get('key')!r} needs a numeric value") from None
            if math.isnan(value):
                row["value"] = None  # kept as NaN: a diverging loss is worth seeing
            rows.append(row)
        s.execute(insert(Metric), rows)
        newest: dict[str, dict[str, Any]] = {}
        for r in rows:
            have = newest.get(r["key"])
            if have is None or (r["step"], r["timestamp"]) >= (have["step"], have["timestamp"]):
                newest[r["key"]] = r
        held = {
            m.key: m
            for m in s.scalars(
                select(LatestMetric).where(
                    LatestMetric.run_id == run_id, LatestMetric.key.in_(newest)
                )
            )
        }
        for key, r in newest.items():
            last = held.get(key)
            if last is None:
                s.add(LatestMetric(**r))
            elif (r["step"], r["timestamp"]) >= (last.step, last.timestamp):
                last.value, last.timestamp, last.step = r["value"], r["timestamp"], r["step"]

    def delete_tag(self, who: Reader, run_id: str, key: str) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            run, _ = self._run(s, a, run_id, write=True)
            tag = s.get(RunTag, (run.id, key))
            if tag is None:
                raise missing(f"tag {key!r} of run {run_id!r}")
            s.delete(tag)

    def log_io(self, who: Reader, run_id: str, field: str, items: list[dict[str, Any]]) -> None:
        """Append to a run's dataset inputs (``inputs``) or model outputs (``outputs``)."""
        with self.db.session() as s:
            a = Access.of(s, who)
            run, exp = self._run(s, a, run_id, write=True)
            if field == "outputs":
                for item in items:  # a run's outputs are models of its own experiment
                    model = s.get(LoggedModel, str(item.get("model_id", "")))
                    if model is None or model.experiment_id != exp.id:
                        raise missing(f"logged model {item.get('model_id')!r}")
            old = json.loads(getattr(run, field))
            if field == "inputs":  # the same dataset (name and digest) is one input, as in MLflow
                seen = {_input_key(i) for i in old}
                items = [i for i in items if _input_key(i) not in seen]
            setattr(run, field, json.dumps(old + list(items)))

    def metric_history(self, who: Reader, run_id: str, key: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            a = Access.of(s, who)
            run, _ = self._run(s, a, run_id)
            rows = s.scalars(
                select(Metric)
                .where(Metric.run_id == run.id, Metric.key == key)
                .order_by(Metric.step, Metric.timestamp, Metric.id)
            )
            return [
                {"key": r.key, "value": wire(r.value), "timestamp": r.timestamp, "step": r.step}
                for r in rows
            ]

    def search_runs(
        self,
        who: Reader,
        experiment_ids: list[str],
        filter_: str | None,
        view_type: str,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        with self.db.session() as s:
            a = Access.of(s, who)
            ids = [self._experiment(s, a, e).id for e in experiment_ids]
            q: Any = select(Run, Experiment).join(Experiment, Experiment.id == Run.experiment_id)
            q = q.where(Run.experiment_id.in_(ids), _lifecycle(Run.lifecycle, view_type))
            for c in search.parse_filter(filter_):
                q = q.where(_run_clause(c))
            order: list[Any] = []
            for kind, key, asc in search.parse_order(order_by):
                if kind in PER_RUN:
                    t = aliased(PER_RUN[kind])
                    q = q.outerjoin(t, and_(t.run_id == Run.id, t.key == key))
                    col: Any = t.value
                else:
                    col = _run_attr(key)
                order += [col.is_(None), col.asc() if asc else col.desc()]
            q = q.order_by(*order, Run.start_ms.desc(), Run.id)
            rows, token = _page(s, q, max_results, page_token, pairs=True)
            return self._runs_json(s, a, rows), token

    def _run_info(self, run: Run, exp: Experiment) -> dict[str, Any]:
        info = {
            "run_id": run.id,
            "run_uuid": run.id,
            "run_name": run.name,
            "experiment_id": str(exp.id),
            "user_id": run.creator,
            "status": run.status,
            "start_time": run.start_ms,
            "artifact_uri": f"{ARTIFACTS}{exp.id}/{run.id}/artifacts",
            "lifecycle_stage": run.lifecycle,
        }
        if run.end_ms is not None:
            info["end_time"] = run.end_ms
        return info

    def _runs_json(
        self, s: Session, a: Access, rows: list[tuple[Run, Experiment]]
    ) -> list[dict[str, Any]]:
        ids = [r.id for r, _ in rows]
        params: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        tags: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        metrics: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            for p in s.scalars(select(Param).where(Param.run_id.in_(chunk))):
                params[p.run_id].append({"key": p.key, "value": p.value})
            for t in s.scalars(select(RunTag).where(RunTag.run_id.in_(chunk))):
                tags[t.run_id].append({"key": t.key, "value": t.value})
            for m in s.scalars(select(LatestMetric).where(LatestMetric.run_id.in_(chunk))):
                metrics[m.run_id].append(
                    {"key": m.key, "value": wire(m.value), "timestamp": m.timestamp, "step": m.step}
                )
        return [
            {
                "info": self._run_info(run, exp),
                "data": {
                    "metrics": metrics[run.id],
                    "params": params[run.id],
                    "tags": tags[run.id],
                },
                "inputs": {"dataset_inputs": json.loads(run.inputs)},
                "outputs": {"model_outputs": json.loads(run.outputs)},
            }
            for run, exp in rows
        ]

    # logged models -------------------------------------------------------------------------
    def _model(
        self, s: Session, a: Access, model_id: str, write: bool = False
    ) -> tuple[LoggedModel, Experiment]:
        row = s.get(LoggedModel, str(model_id or ""))
        exp = self._parent(s, a, row, f"logged model {model_id!r}", write)
        assert row is not None
        return row, exp

    @staticmethod
    def _parent(
        s: Session, a: Access, row: Run | LoggedModel | None, what: str, write: bool
    ) -> Experiment:
        """The experiment of a run or logged model the caller may read (and write, for
        ``write``); what they may not read does not exist for them."""
        exp = s.get(Experiment, row.experiment_id) if row else None
        if exp is None or not a.can_read(exp.bucket):
            raise missing(what)
        if write:
            a.check_write(exp.bucket, what)
        return exp

    def logged_model_json(self, s: Session, row: LoggedModel, exp: Experiment) -> dict[str, Any]:
        metrics = []
        if row.run_id:
            metrics = [
                {
                    "key": m.key,
                    "value": wire(m.value),
                    "timestamp": m.timestamp,
                    "step": m.step,
                    "run_id": row.run_id,
                    "model_id": row.id,
                }
                for m in s.scalars(select(LatestMetric).where(LatestMetric.run_id == row.run_id))
            ]
        info = {
            "model_id": row.id,
            "experiment_id": str(exp.id),
            "name": row.name,
            "creation_timestamp_ms": row.created_ms,
            "last_updated_timestamp_ms": row.updated_ms,
            "artifact_uri": f"{ARTIFACTS}{exp.id}/models/{row.id}/artifacts",
            "status": row.status,
            "model_type": row.model_type,
            "tags": _tags_out(row.tags),
            "params": _tags_out(row.params),
        }
        if row.run_id:
            info["source_run_id"] = row.run_id
        return {"info": info, "data": {"metrics": metrics}}

    def create_logged_model(
        self,
        who: Reader,
        experiment_id: str,
        name: str | None,
        model_type: str | None,
        source_run_id: str | None,
        params: list[dict[str, Any]] | None,
        tags: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            exp = self._experiment(s, a, experiment_id or "0", write=True)
            if source_run_id:
                run, run_exp = self._run(s, a, source_run_id)
                if run_exp.id != exp.id:
                    raise ModelsError("a logged model's run must be of the same experiment")
            t = now_ms()
            row = LoggedModel(
                id=f"m-{secrets.token_hex(16)}",
                experiment_id=exp.id,
                run_id=source_run_id or None,
                name=(name or "model")[:256],
                model_type=(model_type or "")[:64],
                creator=who.name,
                tags=json.dumps(_tags_in(tags)),
                params=json.dumps(_tags_in(params)),
                created_ms=t,
                updated_ms=t,
            )
            s.add(row)
            s.flush()
            return self.logged_model_json(s, row, exp)

    def get_logged_model(self, who: Reader, model_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            return self.logged_model_json(s, *self._model(s, a, model_id))

    def update_logged_model(
        self,
        who: Reader,
        model_id: str,
        status: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        drop_tag: str | None = None,
    ) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            row, exp = self._model(s, a, model_id, write=True)
            if status:
                if status not in (
                    "LOGGED_MODEL_PENDING",
                    "LOGGED_MODEL_READY",
                    "LOGGED_MODEL_UPLOAD_FAILED",
                ):
                    raise ModelsError(f"unknown logged model status {status!r}")
                row.status = status
            if tags:
                row.tags = json.dumps({**json.loads(row.tags), **tags})
            if params:
                row.params = json.dumps({**json.loads(row.params), **params})
            if drop_tag is not None:
                had = json.loads(row.tags)
                if drop_tag not in had:
                    raise missing(f"tag {drop_tag!r} of logged model {model_id!r}")
                del had[drop_tag]
                row.tags = json.dumps(had)
            row.updated_ms = now_ms()
            return self.logged_model_json(s, row, exp)

    def delete_logged_model(self, who: Reader, model_id: str) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            row, exp = self._model(s, a, model_id, write=True)
            s.add(
                Trash(
                    bucket=exp.bucket,
                    prefix=f"{KEY_PREFIX}{exp.id}/models/{row.id}/",
                    what=f"logged model {row.id}",
                    due_ms=now_ms() + self.grace_ms,
                )
            )
            s.delete(row)

    def search_logged_models(
        self,
        who: Reader,
        experiment_ids: list[str],
        filter_: str | None,
        max_results: int,
        page_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        with self.db.session() as s:
            a = Access.of(s, who)
            ids = [self._experiment(s, a, e).id for e in experiment_ids]
            q: Any = (
                select(LoggedModel, Experiment)
                .join(Experiment, Experiment.id == LoggedModel.experiment_id)
                .where(LoggedModel.experiment_id.in_(ids))
            )
            for c in search.parse_filter(filter_):
                col = {
                    "name": LoggedModel.name,
                    "model_id": LoggedModel.id,
                    "source_run_id": LoggedModel.run_id,
                    "status": LoggedModel.status,
                    "model_type": LoggedModel.model_type,
                }.get(c.key)
                if col is None or c.kind != "attr":
                    raise ModelsError(f"logged models cannot be searched by {c.key!r} here")
                q = q.where(_compare(col, c))
            q = q.order_by(LoggedModel.created_ms.desc(), LoggedModel.id)
            rows, token = _page(s, q, max_results, page_token, pairs=True)
            return [self.logged_model_json(s, m, e) for m, e in rows], token

    # where artifacts live ------------------------------------------------------------------
    def artifact_place(self, who: Reader, path: str, write: bool) -> tuple[str, str]:
        """The (bucket, lake key) of ``mlflow-artifacts:/<path>``, if the caller may reach it."""
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts) or not parts[0].isdigit():
            raise missing(f"artifact path {path!r}")
        with self.db.session() as s:
            a = Access.of(s, who)
            exp = self._experiment(s, a, parts[0], write=write)
            return exp.bucket, KEY_PREFIX + "/".join([str(exp.id), *parts[1:]])

    def source_place(
        self, s: Session, a: Access, source: str, run_id: str | None, model_id: str | None
    ) -> tuple[str, str, Run | None]:
        """Where a model version's files come from: (bucket, lake prefix, the run); the caller
        must be able to read them."""
        source = source or (f"models:/{model_id}" if model_id else "")
        if source.startswith("models:/m-"):
            row, exp = self._model(s, a, source.removeprefix("models:/").strip("/"))
            run = s.get(Run, row.run_id) if row.run_id else None
            return exp.bucket, f"{KEY_PREFIX}{exp.id}/models/{row.id}/artifacts/", run
        if source.startswith("runs:/"):
            rid, _, sub = source.removeprefix("runs:/").partition("/")
            run, exp = self._run(s, a, rid)
            return (
                exp.bucket,
                f"{KEY_PREFIX}{exp.id}/{run.id}/artifacts/{sub.strip('/')}/".replace("//", "/"),
                run,
            )
        if source.startswith(ARTIFACTS):
            parts = [p for p in source.removeprefix(ARTIFACTS).split("/") if p]
            if not parts or not parts[0].isdigit() or ".." in parts:
                raise missing(f"source {source!r}")
            exp = self._experiment(s, a, parts[0])
            run = s.get(Run, parts[1]) if len(parts) > 1 else None
            return exp.bucket, KEY_PREFIX + "/".join([str(exp.id), *parts[1:]]) + "/", run
        raise ModelsError(
            f"cannot register {source!r}: register a logged model (models:/m-...), a run's "
            "artifacts (runs:/RUN/PATH) or mlflow-artifacts:/ files of this hub"
        )


# a run's values by key, as filters and orders name them (metrics: the last value of each)
PER_RUN: dict[str, type[LatestMetric] | type[Param] | type[RunTag]] = {
    "metric": LatestMetric,
    "param": Param,
    "tag": RunTag,
}


def wire(value: float | None) -> float | str:
    """A metric's value as MLflow's API answers it: numbers, or "NaN" and "Infinity" as text
    (JSON has no such numbers; MLflow's client reads them so)."""
    if value is None:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _input_key(item: dict[str, Any]) -> tuple[str, str]:
    ds = item.get("dataset") or {}
    return str(ds.get("name")), str(ds.get("digest"))


def _lifecycle(col: Any, view_type: str | None) -> Any:
    v = (view_type or "ACTIVE_ONLY").upper()
    if v == "ALL":
        return col.in_(("active", "deleted"))
    return col == ("deleted" if v == "DELETED_ONLY" else "active")


def _compare(col: Any, c: search.Clause) -> Any:
    op, v = c.op, c.value
    if op == "=":
        return col == v
    if op == "!=":
        return col != v
    if op == ">":
        return col > v
    if op == ">=":
        return col >= v
    if op == "<":
        return col < v
    if op == "<=":
        return col <= v
    if op == "LIKE":
        return col.like(v)
    if op == "ILIKE":
        return func.lower(col).like(str(v).lower())
    if op == "IN":
        return col.in_(v)
    return col.not_in(v)


def _run_attr(key: str) -> Any:
    col = {
        "status": Run.status,
        "run_name": Run.name,
        "start_time": Run.start_ms,
        "end_time": Run.end_ms,
        "run_id": Run.id,
        "user_id": Run.creator,
        "created": Run.start_ms,
        "Created": Run.start_ms,
    }.get(key)
    if col is None:
        raise ModelsError(f"runs cannot be searched or ordered by the attribute {key!r}")
    return col


def _run_clause(c: search.Clause) -> Any:
    if c.kind in PER_RUN:
        if c.kind == "metric" and c.op not in ("=", "!=", ">", ">=", "<", "<="):
            raise ModelsError(f"metrics compare with = != > >= < <=, not {c.op}")
        t = aliased(PER_RUN[c.kind])
        return (
            select(t.run_id)
            .where(t.run_id == Run.id, t.key == c.key, _compare(t.value, c))
            .exists()
        )
    if c.kind == "dataset":
        raise ModelsError("runs are not searched by dataset here")
    return _compare(_run_attr(c.key), c)


def _page(
    s: Session, q: Select[Any], max_results: int, token: str | None, pairs: bool = False
) -> tuple[list[Any], str | None]:
    if not 0 < max_results <= MAX_RESULTS:
        raise ModelsError(f"max_results must be between 1 and {MAX_RESULTS}")
    offset = search.offset_of(token)
    got = s.execute(q.offset(offset).limit(max_results + 1)).all()
    rows = [tuple(r) if pairs else r[0] for r in got[:max_results]]
    return rows, search.page_token(offset + max_results) if len(got) > max_results else None
