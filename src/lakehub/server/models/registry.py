"""Registered models, their versions and aliases, with every alias move kept.

A version is registered from files its registrant may read (a logged model, a run's artifacts);
they are copied into the model's bucket (``mlflow/registry/<model id>/<version>/``), so whoever
may read the model may load the version, and deleting the run leaves it whole. An alias move
and its history event are written in one transaction; deleting a version removes the aliases
that pointed at it, and says so in the history. Rollback moves an alias back to the version it
held before, as a new event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from lakehub.server.db import Database
from lakehub.server.models import search
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader, missing
from lakehub.server.models.owners import Access, owner_of
from lakehub.server.models.tables import (
    Alias,
    AliasEvent,
    ModelVersion,
    RegisteredModel,
    RunTag,
    Trash,
)
from lakehub.server.models.tracking import (
    KEY_PREFIX,
    Tracking,
    _compare,
    _page,
    _tags_in,
    _tags_out,
    now_ms,
)
from lakehub.server.schema import Instant, from_ms


class AliasEventView(BaseModel):
    alias: str
    old_version: int | None = Field(description="None: the alias was new")
    new_version: int | None = Field(description="None: the alias was removed")
    action: str = Field(description="set, delete, rollback or version-deleted")
    actor: str
    at: Instant


class VersionView(BaseModel):
    version: int
    status: str
    source: str
    run_id: str | None
    aliases: list[str]
    description: str
    creator: str
    created_at: Instant
    size_bytes: int
    lineage: dict[str, Any] = Field(
        description="run_id, experiment_id, datasets (as the run logged them), environment, "
        "environment_build, code (notebook or script), git_commit, user"
    )


class ModelView(BaseModel):
    name: str = Field(description="as you name it: bare when yours, else owner.name")
    owner: str
    access: str = Field(description="write or read (admin: an administrator's view)")
    description: str
    aliases: dict[str, int]
    latest_version: int | None
    created_at: Instant
    updated_at: Instant


class ModelDetail(ModelView):
    versions: list[VersionView]
    history: list[AliasEventView] = Field(description="every alias move, oldest first")


ALIAS_RE = re.compile(r"^[A-Za-z_][\w\-]{0,255}$")
REGISTRY = "registry"


@dataclass(frozen=True)
class Deployable:
    model_id: int
    bucket: str
    model: str  # as the caller names it
    ref: str  # "@alias" or the version number
    version: int
    lineage: dict[str, Any]

    @property
    def files(self) -> tuple[str, str]:
        """(bucket, key prefix) of the version's files."""
        return self.bucket, Registry.prefix(self.model_id, self.version)


class Registry:
    def __init__(
        self, db: Database, tracking: Tracking, files: ArtifactStore, grace_ms: int
    ) -> None:
        self.db = db
        self.tracking = tracking
        self.files = files
        self.grace_ms = grace_ms

    # registered models ---------------------------------------------------------------------
    def _model(self, s: Session, a: Access, name: str, write: bool = False) -> RegisteredModel:
        buckets, bare = a.candidates(name or "")
        rows = s.scalars(
            select(RegisteredModel).where(
                RegisteredModel.bucket.in_(buckets), RegisteredModel.name == bare
            )
        ).all()
        mine = [r for r in rows if r.bucket == buckets[0]] or list(rows)
        if not mine:
            raise missing(f"registered model {name!r}")
        if len(mine) > 1:
            names = ", ".join(sorted(a.shown(r.bucket, r.name) for r in mine))
            raise ModelsError(f"several models are called {name!r} ({names}): say which")
        if write:
            a.check_write(mine[0].bucket, f"registered model {name!r}")
        return mine[0]

    def _model_json(self, s: Session, a: Access, row: RegisteredModel) -> dict[str, Any]:
        aliases = s.scalars(select(Alias).where(Alias.model_id == row.id)).all()
        latest = s.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id == row.id)
            .order_by(ModelVersion.version.desc())
            .limit(1)
        ).all()
        return {
            "name": a.shown(row.bucket, row.name),
            "creation_timestamp": row.created_ms,
            "last_updated_timestamp": row.updated_ms,
            "user_id": row.creator,
            "description": row.description,
            "tags": _tags_out(row.tags),
            "aliases": [{"alias": x.alias, "version": str(x.version)} for x in aliases],
            "latest_versions": [self._version_json(s, a, row, v) for v in latest],
        }

    def create_model(
        self, who: Reader, name: str, tags: list[dict[str, Any]] | None, description: str | None
    ) -> dict[str, Any]:
        if not name or not name.strip() or "/" in name or "@" in name:
            raise ModelsError(
                f"invalid model name {name!r}: no '/' nor '@' (they end models:/ URIs)"
            )
        with self.db.session() as s:
            a = Access.of(s, who)
            bucket, bare = a.target(name.strip(), "model")
            if s.scalar(
                select(RegisteredModel.id).where(
                    RegisteredModel.bucket == bucket, RegisteredModel.name == bare
                )
            ):
                raise ModelsError(
                    f"registered model {name!r} already exists", "RESOURCE_ALREADY_EXISTS"
                )
            t = now_ms()
            row = RegisteredModel(
                bucket=bucket,
                name=bare[:256],
                creator=who.name,
                description=description or "",
                tags=json.dumps(_tags_in(tags)),
                created_ms=t,
                updated_ms=t,
            )
            s.add(row)
            s.flush()
            return self._model_json(s, a, row)

    def get_model(self, who: Reader, name: str) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            return self._model_json(s, a, self._model(s, a, name))

    def update_model(
        self,
        who: Reader,
        name: str,
        description: str | None = None,
        new_name: str | None = None,
        tag: tuple[str, str] | None = None,
        drop_tag: str | None = None,
    ) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            row = self._model(s, a, name, write=True)
            if description is not None:
                row.description = description
            if new_name is not None:
                bucket, bare = a.target(new_name, "model")
                if bucket != row.bucket or "/" in bare or "@" in bare:
                    raise ModelsError(
                        "a model keeps its owner when renamed, and has no '/' nor '@'"
                    )
                if s.scalar(
                    select(RegisteredModel.id).where(
                        RegisteredModel.bucket == bucket, RegisteredModel.name == bare
                    )
                ):
                    raise ModelsError(
                        f"registered model {new_name!r} already exists", "RESOURCE_ALREADY_EXISTS"
                    )
                row.name = bare
            tags = json.loads(row.tags)
            if tag is not None:
                tags.update(_tags_in([{"key": tag[0], "value": tag[1]}]))
            if drop_tag is not None:
                tags.pop(drop_tag, None)
            row.tags, row.updated_ms = json.dumps(tags), now_ms()
            return self._model_json(s, a, row)

    def delete_model(self, who: Reader, name: str) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            row = self._model(s, a, name, write=True)
            self._trash(s, row.bucket, self.prefix(row.id), f"model {row.name}")
            s.delete(row)

    def search_models(
        self,
        who: Reader,
        filter_: str | None,
        max_results: int,
        order_by: list[str] | None,
        token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        q: Select[Any] = select(RegisteredModel)
        by_tag = []
        for c in search.parse_filter(filter_):
            if c.kind == "tag":
                by_tag.append(c)
            elif c.key == "name" and c.kind == "attr":
                q = q.where(_compare(RegisteredModel.name, c))
            else:
                raise ModelsError("registered models are searched by name and tags")
        order: list[Any] = []
        for kind, key, asc in search.parse_order(order_by):
            if kind != "attr":
                raise ModelsError(f"registered models cannot be ordered by {kind} {key!r}")
            col = {
                "name": RegisteredModel.name,
                "timestamp": RegisteredModel.updated_ms,
                "last_updated_timestamp": RegisteredModel.updated_ms,
                "creation_timestamp": RegisteredModel.created_ms,
            }.get(key)
            if col is None:
                raise ModelsError(f"registered models cannot be ordered by {key!r}")
            order.append(col.asc() if asc else col.desc())
        q = q.order_by(*(order or [RegisteredModel.name]), RegisteredModel.id)
        with self.db.session() as s:
            a = Access.of(s, who)
            readable = a.readable()
            if readable is not None:
                q = q.where(RegisteredModel.bucket.in_(readable))
            if by_tag:  # tags are few per model, and models few per owner: matched here
                rows, next_token = search.page_list(
                    [r for r in s.scalars(q) if search.tags_match(r.tags, by_tag)],
                    max_results,
                    token,
                )
            else:
                rows, next_token = _page(s, q, max_results, token)
            return [self._model_json(s, a, r) for r in rows], next_token

    # versions ------------------------------------------------------------------------------
    def _version(
        self, s: Session, a: Access, name: str, version: str, write: bool = False
    ) -> tuple[RegisteredModel, ModelVersion]:
        model = self._model(s, a, name, write=write)
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise ModelsError(f"a version is a number, not {version!r}") from None
        row = s.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.version == number
            )
        )
        if row is None:
            raise missing(f"version {version} of model {name!r}")
        return model, row

    def _version_json(
        self, s: Session, a: Access, model: RegisteredModel, row: ModelVersion
    ) -> dict[str, Any]:
        aliases = s.scalars(
            select(Alias.alias).where(Alias.model_id == model.id, Alias.version == row.version)
        ).all()
        out = {
            "name": a.shown(model.bucket, model.name),
            "version": str(row.version),
            "creation_timestamp": row.created_ms,
            "last_updated_timestamp": row.updated_ms,
            "user_id": row.creator,
            "current_stage": "None",
            "description": row.description,
            "source": row.source,
            "status": row.status,
            "status_message": row.status_message,
            "tags": _tags_out(row.tags),
            "aliases": list(aliases),
        }
        if row.run_id:
            out["run_id"] = row.run_id
        if row.logged_model_id:
            out["model_id"] = row.logged_model_id
        return out

    def create_version(
        self,
        who: Reader,
        name: str,
        source: str,
        run_id: str | None,
        model_id: str | None,
        tags: list[dict[str, Any]] | None,
        description: str | None,
    ) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            model = self._model(s, a, name, write=True)
            src_bucket, src_prefix, run = self.tracking.source_place(s, a, source, run_id, model_id)
            if model_id is None and source.startswith("models:/m-"):
                model_id = source.removeprefix("models:/").strip("/")
            # one registration per model at a time takes the next number
            s.execute(
                select(RegisteredModel.id).where(RegisteredModel.id == model.id).with_for_update()
            )
            last = s.scalar(
                select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
            )
            t = now_ms()
            row = ModelVersion(
                model_id=model.id,
                version=(last or 0) + 1,
                source=source,
                run_id=run.id if run else run_id,
                logged_model_id=model_id,
                creator=who.name,
                description=description or "",
                tags=json.dumps(_tags_in(tags)),
                lineage=json.dumps(self.lineage(s, run)),
                created_ms=t,
                updated_ms=t,
                status="PENDING_REGISTRATION",
            )
            s.add(row)
            model.updated_ms = t
            s.flush()
            version_id, dest = row.id, (model.bucket, self.prefix(model.id, row.version))
        # the files are copied outside the transaction: they may take a while
        try:
            size, status = self.files.copy_tree(who, (src_bucket, src_prefix), dest), "READY"
            message = ""
        except ModelsError as err:
            size, status, message = 0, "FAILED_REGISTRATION", str(err)
            with self.db.session() as s:  # what was copied before it failed goes too
                self._trash(s, dest[0], dest[1], f"failed version of model {name}")
        with self.db.session() as s:
            a = Access.of(s, who)
            done = s.get(ModelVersion, version_id)
            assert done is not None
            done.status, done.size_bytes, done.status_message = status, size, message
            parent = s.get(RegisteredModel, done.model_id)
            assert parent is not None
            return self._version_json(s, a, parent, done)

    @staticmethod
    def prefix(model_id: int, version: int | None = None) -> str:
        """The lake key prefix of a model's (or one version's) files in its bucket."""
        return f"{KEY_PREFIX}{REGISTRY}/{model_id}/" + (f"{version}/" if version else "")

    @staticmethod
    def lineage(s: Session, run: Any) -> dict[str, Any]:
        """What a version came from: its run, the datasets the run read (as they were logged),
        the environment build and the code it ran."""
        if run is None:
            return {}
        rows = s.execute(select(RunTag.key, RunTag.value).where(RunTag.run_id == run.id))
        tags = {k: v for k, v in rows}
        return {
            "run_id": run.id,
            "experiment_id": str(run.experiment_id),
            "datasets": json.loads(run.inputs),
            "environment": tags.get("lakehub.environment", ""),
            "environment_build": tags.get("lakehub.environment.build", ""),
            "code": tags.get("mlflow.source.name", ""),
            "git_commit": tags.get("mlflow.source.git.commit", ""),
            "user": run.creator,
        }

    def get_version(self, who: Reader, name: str, version: str) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            model, row = self._version(s, a, name, version)
            return self._version_json(s, a, model, row)

    def download_uri(self, who: Reader, name: str, version: str) -> str:
        with self.db.session() as s:
            a = Access.of(s, who)
            model, row = self._version(s, a, name, version)
            return f"mlflow-artifacts:/{REGISTRY}/{model.id}/{row.version}"

    def update_version(
        self,
        who: Reader,
        name: str,
        version: str,
        description: str | None = None,
        tag: tuple[str, str] | None = None,
        drop_tag: str | None = None,
    ) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            model, row = self._version(s, a, name, version, write=True)
            if description is not None:
                row.description = description
            tags = json.loads(row.tags)
            if tag is not None:
                tags.update(_tags_in([{"key": tag[0], "value": tag[1]}]))
            if drop_tag is not None:
                tags.pop(drop_tag, None)
            row.tags, row.updated_ms = json.dumps(tags), now_ms()
            return self._version_json(s, a, model, row)

    def delete_version(self, who: Reader, name: str, version: str) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            model, row = self._version(s, a, name, version, write=True)
            for alias in s.scalars(
                select(Alias).where(Alias.model_id == model.id, Alias.version == row.version)
            ):
                _moved(s, model.id, alias.alias, row.version, None, "version-deleted", who.name)
                s.delete(alias)
            self._trash(
                s,
                model.bucket,
                self.prefix(model.id, row.version),
                f"version {row.version} of model {model.name}",
            )
            s.delete(row)

    def search_versions(
        self, who: Reader, filter_: str | None, max_results: int, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        q: Any = select(RegisteredModel, ModelVersion).join(
            ModelVersion, ModelVersion.model_id == RegisteredModel.id
        )
        with self.db.session() as s:
            a = Access.of(s, who)
            by_tag = []
            for c in search.parse_filter(filter_):
                if c.kind == "tag":
                    by_tag.append(c)
                elif c.key == "name" and c.op == "=":
                    buckets, bare = a.candidates(str(c.value))
                    q = q.where(RegisteredModel.bucket.in_(buckets), RegisteredModel.name == bare)
                elif c.key in ("run_id", "source_run_id"):
                    q = q.where(_compare(ModelVersion.run_id, c))
                elif c.key == "name":
                    q = q.where(_compare(RegisteredModel.name, c))
                else:
                    raise ModelsError(f"model versions cannot be searched by {c.key!r} here")
            readable = a.readable()
            if readable is not None:
                q = q.where(RegisteredModel.bucket.in_(readable))
            q = q.order_by(RegisteredModel.name, ModelVersion.version.desc())
            if by_tag:
                found = [(m, v) for m, v in s.execute(q) if search.tags_match(v.tags, by_tag)]
                rows, next_token = search.page_list(found, max_results, token)
            else:
                rows, next_token = _page(s, q, max_results, token, pairs=True)
            return [self._version_json(s, a, m, v) for m, v in rows], next_token

    # aliases -------------------------------------------------------------------------------
    def set_alias(
        self, who: Reader, name: str, alias: str, version: str, action: str = "set"
    ) -> None:
        if (
            not ALIAS_RE.match(alias or "")
            or alias.lower() == "latest"
            or alias[1:].isdigit()
            and alias[0] in "vV"
        ):
            raise ModelsError(
                f"invalid alias {alias!r}: a word of letters, digits, _ and -, "
                "neither 'latest' nor v<number>"
            )
        with self.db.session() as s:
            a = Access.of(s, who)
            model, row = self._version(s, a, name, version, write=True)
            # one writer per model at a time: the old value read here is the one replaced
            s.execute(
                select(RegisteredModel.id).where(RegisteredModel.id == model.id).with_for_update()
            )
            held = s.get(Alias, (model.id, alias))
            old = held.version if held else None
            if held is None:
                s.add(Alias(model_id=model.id, alias=alias, version=row.version))
            else:
                held.version = row.version
            _moved(s, model.id, alias, old, row.version, action, who.name)
            model.updated_ms = now_ms()

    def delete_alias(self, who: Reader, name: str, alias: str) -> None:
        with self.db.session() as s:
            a = Access.of(s, who)
            model = self._model(s, a, name, write=True)
            held = s.get(Alias, (model.id, alias))
            if held is None:
                raise missing(f"alias {alias!r} of model {name!r}")
            _moved(s, model.id, alias, held.version, None, "delete", who.name)
            s.delete(held)

    def by_alias(self, who: Reader, name: str, alias: str) -> dict[str, Any]:
        with self.db.session() as s:
            a = Access.of(s, who)
            model = self._model(s, a, name)
            held = s.get(Alias, (model.id, alias))
            if held is None:
                raise missing(f"alias {alias!r} of model {name!r}")
            _, row = self._version(s, a, name, str(held.version))
            return self._version_json(s, a, model, row)

    def deployable(self, who: Reader, given: str) -> Deployable:
        """What ``name@alias``, ``name/N`` or a bare ``name`` (its latest version) names, for
        ``who`` (who must read the model); ``models:/`` in front is taken too."""
        text = given.removeprefix("models:/")
        name, at, alias = text.partition("@")
        number = ""
        if not at:
            name, _, number = text.rpartition("/") if "/" in text else (text, "", "")
        with self.db.session() as s:
            a = Access.of(s, who)
            model = self._model(s, a, name)
            if at:
                held = s.get(Alias, (model.id, alias))
                if held is None:
                    raise missing(f"alias {alias!r} of model {name!r}")
                ref, number = f"@{alias}", str(held.version)
            elif not number:
                latest = s.scalar(
                    select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
                )
                if latest is None:
                    raise missing(f"a version of model {name!r}")
                number = str(latest)
                ref = number
            else:
                ref = number
            _, row = self._version(s, a, name, number)
            return Deployable(
                model.id,
                model.bucket,
                a.shown(model.bucket, model.name),
                ref,
                row.version,
                json.loads(row.lineage or "{}"),
            )

    def version_of(self, model_id: int, ref: str) -> int | None:
        """The version ``ref`` (``@alias`` or a number) names now; None if none (no access
        check: for what was resolved once with one)."""
        if not ref.startswith("@"):
            return int(ref)
        with self.db.session() as s:
            held = s.get(Alias, (model_id, ref[1:]))
            return None if held is None else held.version

    def alias_history(
        self, who: Reader, name: str, alias: str | None = None
    ) -> list[AliasEventView]:
        with self.db.session() as s:
            a = Access.of(s, who)
            return self._history(s, self._model(s, a, name).id, alias)

    @staticmethod
    def _history(s: Session, model_id: int, alias: str | None = None) -> list[AliasEventView]:
        q = select(AliasEvent).where(AliasEvent.model_id == model_id)
        if alias:
            q = q.where(AliasEvent.alias == alias)
        return [
            AliasEventView(
                alias=e.alias,
                old_version=e.old_version,
                new_version=e.new_version,
                action=e.action,
                actor=e.actor,
                at=from_ms(e.at_ms),
            )
            for e in s.scalars(q.order_by(AliasEvent.id))
        ]

    def rollback(self, who: Reader, name: str, alias: str) -> int:
        """Move ``alias`` back to the version it held before its last move; that version."""
        events = [e for e in self.alias_history(who, name, alias) if e.action != "version-deleted"]
        back = events[-1].old_version if events else None
        if back is None:
            raise ModelsError(
                f"alias {alias!r} of model {name!r} has no earlier version to go back to"
            )
        self.set_alias(who, name, alias, str(back), action="rollback")
        return back

    def _view(self, s: Session, a: Access, row: RegisteredModel) -> ModelView:
        aliases = {
            x.alias: x.version for x in s.scalars(select(Alias).where(Alias.model_id == row.id))
        }
        latest = s.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.model_id == row.id)
        )
        return ModelView(
            name=a.shown(row.bucket, row.name),
            owner=owner_of(row.bucket),
            access=a.level(row.bucket) or "read",
            description=row.description,
            aliases=aliases,
            latest_version=latest,
            created_at=from_ms(row.created_ms),
            updated_at=from_ms(row.updated_ms),
        )

    def visible(self, who: Reader) -> list[ModelView]:
        """Every registered model the caller may read, most recently changed first."""
        with self.db.session() as s:
            a = Access.of(s, who)
            q = select(RegisteredModel).order_by(
                RegisteredModel.updated_ms.desc(), RegisteredModel.id
            )
            readable = a.readable()
            if readable is not None:
                q = q.where(RegisteredModel.bucket.in_(readable))
            return [self._view(s, a, r) for r in s.scalars(q)]

    def detail(self, who: Reader, name: str) -> ModelDetail:
        """A model with every version (and its lineage) and the history of its aliases."""
        with self.db.session() as s:
            a = Access.of(s, who)
            row = self._model(s, a, name)
            aliases: dict[int, list[str]] = {}
            for x in s.scalars(select(Alias).where(Alias.model_id == row.id).order_by(Alias.alias)):
                aliases.setdefault(x.version, []).append(x.alias)
            versions = [
                VersionView(
                    version=v.version,
                    status=v.status,
                    source=v.source,
                    run_id=v.run_id,
                    aliases=aliases.get(v.version, []),
                    description=v.description,
                    creator=v.creator,
                    created_at=from_ms(v.created_ms),
                    size_bytes=v.size_bytes,
                    lineage=json.loads(v.lineage),
                )
                for v in s.scalars(
                    select(ModelVersion)
                    .where(ModelVersion.model_id == row.id)
                    .order_by(ModelVersion.version.desc())
                )
            ]
            return ModelDetail(
                **self._view(s, a, row).model_dump(),
                versions=versions,
                history=self._history(s, row.id),
            )

    def artifact_place(self, who: Reader, path: str) -> tuple[str, str]:
        """(bucket, lake key) of ``mlflow-artifacts:/registry/<model id>/<version>/...``: read
        only, by whoever may read the model."""
        parts = [p for p in path.split("/") if p]
        if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit() or ".." in parts:
            raise missing(f"artifact path {path!r}")
        with self.db.session() as s:
            a = Access.of(s, who)
            model = s.get(RegisteredModel, int(parts[1]))
            if model is None or not a.can_read(model.bucket):
                raise missing(f"artifact path {path!r}")
            return model.bucket, KEY_PREFIX + "/".join(parts)

    # the bytes of what was deleted ---------------------------------------------------------
    def _trash(self, s: Session, bucket: str, prefix: str, what: str) -> None:
        s.add(Trash(bucket=bucket, prefix=prefix, what=what[:256], due_ms=now_ms() + self.grace_ms))


def _moved(
    s: Session, model_id: int, alias: str, old: int | None, new: int | None, action: str, actor: str
) -> None:
    """Record an alias move in the same transaction as the move itself."""
    s.add(
        AliasEvent(
            model_id=model_id,
            alias=alias,
            old_version=old,
            new_version=new,
            action=action,
            actor=actor,
            at_ms=now_ms(),
        )
    )
