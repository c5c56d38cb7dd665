"""Named notebook environments: their specs, who changes them, and a background builder.

Specs live in the metadata database; builds live under ``envs/`` (see ``environments.py``).
Administrators add or change specs; each change queues a build that one background thread runs,
one build at a time, logging to ``envs/<name>.log``; a finished build of exactly the same spec
and SDK already in ``envs/`` (another hub's, with a shared ``environments_dir``, or a lost
database's) is reused, unless an administrator asked for a rebuild. A server may use an
environment as soon as one build of it succeeded: a later failed or running build leaves that
one in use. Built-ins (``specs.BUILTIN_ENVIRONMENTS``) follow the code until an administrator
changes them, and cannot be removed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server.db import Database, utcnow
from lakehub.server.db import Environment as Row
from lakehub.server.identity.users import UserError
from lakehub.server.notebooks import environments as build
from lakehub.server.notebooks.specs import BUILTIN_ENVIRONMENTS, EnvironmentSpec, SpecError
from lakehub.server.schema import Instant

log = logging.getLogger("lakehub.environments")
CODE = "lakehub"  # updated_by of a built-in that still follows the code


class EnvView(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    python: str
    packages: list[str]
    builtin: bool
    status: str  # queued | building | ready | failed
    progress: str
    error: str
    usable: bool  # a build exists that servers can use
    contents: list[str] = Field(description="name==version of everything inside its build")
    highlights: list[str] = Field(description="the spec's packages with their built versions")
    built_at: Instant | None
    updated_by: str
    updated_at: Instant

    @classmethod
    def of(cls, r: Row) -> EnvView:
        return cls(
            name=r.name,
            description=r.description,
            python=r.python,
            packages=json.loads(r.packages),
            builtin=r.builtin,
            status=r.status,
            progress=r.progress,
            error=r.error,
            usable=r.built_hash is not None,
            contents=json.loads(r.contents),
            highlights=highlights(json.loads(r.packages), json.loads(r.contents)),
            built_at=r.built_at,
            updated_by=r.updated_by,
            updated_at=r.updated_at,
        )


class Environments:
    def __init__(self, db: Database, envs_dir: Path, notebook_python: str) -> None:
        self.db = db
        self.envs_dir = envs_dir
        self.notebook_python = notebook_python
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forced: set[str] = set()  # asked to build again: no reuse of a finished build

    # specs ---------------------------------------------------------------------------------
    def sync_builtins(self) -> None:
        """At start: add missing built-ins; refresh those no administrator changed; queue again
        builds a stopped control plane left unfinished, and builds whose SDK is older than this
        LakeHub's (the build hash covers it)."""
        with self.db.session() as s:
            rows = {r.name: r for r in s.scalars(select(Row))}
            for spec in BUILTIN_ENVIRONMENTS:
                row = rows.get(spec.name)
                if row is None:
                    s.add(_row(spec, builtin=True, actor=CODE))
                elif row.updated_by == CODE and _spec(row) != spec:
                    _update(row, spec, CODE)
            for row in rows.values():
                if row.status == "building" or (row.status == "ready" and self._stale(row)):
                    row.status = "queued"

    def _stale(self, row: Row) -> bool:
        try:
            python = build.interpreter_for(row.python, self.notebook_python)
        except build.BuildError:
            return False  # its next build says why
        built = (row.built_hash or "")[:12]
        return built != build.spec_hash(python, tuple(json.loads(row.packages)))

    def all(self) -> list[EnvView]:
        with self.db.session() as s:
            return [EnvView.of(r) for r in s.scalars(select(Row).order_by(Row.name))]

    def get(self, name: str) -> EnvView:
        with self.db.session() as s:
            return EnvView.of(self._get(s, name))

    def put(
        self,
        name: str,
        description: str | None,
        python: str | None,
        packages: list[str] | None,
        actor: str,
    ) -> EnvView:
        """Create or change an environment's spec; a changed spec is queued for a build."""
        with self.db.session() as s:
            row = s.scalar(select(Row).where(Row.name == name))
            old = _spec(row) if row else None
            try:
                spec = EnvironmentSpec(
                    name,
                    description if description is not None else (old.description if old else ""),
                    python or (old.python if old else "3.11"),
                    tuple(packages) if packages is not None else (old.packages if old else ()),
                )
            except SpecError as err:
                raise UserError(str(err)) from None
            if row is None:
                s.add(_row(spec, builtin=False, actor=actor))
            elif spec != old:
                _update(row, spec, actor)
        self._wake.set()
        return self.get(name)

    def rebuild(self, name: str, actor: str) -> EnvView:
        with self.db.session() as s:
            row = self._get(s, name)
            if row.status != "building":
                row.status, row.progress, row.error = "queued", "", ""
        self._forced.add(name)
        self._wake.set()
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove a spec; its build stays on disk for servers still running it."""
        with self.db.session() as s:
            row = self._get(s, name)
            if row.builtin:
                raise UserError(f"{name!r} is built in: change its spec instead", 409)
            if row.status == "building":
                raise UserError(f"{name!r} is being built: remove it once the build ends", 409)
            s.delete(row)

    def path(self, name: str) -> Path | None:
        """The build servers of ``name`` use now (resolved, so a server keeps one build)."""
        with self.db.session() as s:
            row = s.scalar(select(Row).where(Row.name == name))
            digest = row.built_hash if row else None
        target = self.envs_dir / f"{name}-{digest}"
        return target if digest and target.is_dir() else None

    def log_text(self, name: str, limit: int = 200_000) -> str:
        self.get(name)
        try:
            data = self.log_file(name).read_bytes()
        except FileNotFoundError:
            return ""
        return data[-limit:].decode(errors="replace")

    def log_file(self, name: str) -> Path:
        return self.envs_dir / f"{name}.log"

    @staticmethod
    def _get(s: Session, name: str) -> Row:
        row = s.scalar(select(Row).where(Row.name == name))
        if row is None:
            raise UserError(f"no environment named {name!r}", 404)
        return row

    # the builder ---------------------------------------------------------------------------
    def start(self, begin: Callable[[], bool] = lambda: True) -> None:
        """Build in the background, from when ``begin()`` is true (polled every second)."""
        self._begin = begin
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lakehub-builds", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._begin() and not self._stop.wait(1):
            pass
        while not self._stop.is_set():
            if not self.build_next():
                self._wake.wait(30)
                self._wake.clear()

    def build_next(self, only: str | None = None) -> bool:
        """Build the oldest queued environment (``only``: that one) that no other hub sharing
        the environments folder is building (else the oldest: its build is then waited for and
        reused); False when none is queued."""
        self.envs_dir.mkdir(parents=True, exist_ok=True)
        with self.db.session() as s:
            queued = select(Row).where(Row.status == "queued").order_by(Row.updated_at, Row.id)
            if only is not None:
                queued = queued.where(Row.name == only)
            rows = s.scalars(queued).all()
            if not rows:
                return False
            free = (r for r in rows if not build.held_elsewhere(self.envs_dir, r.name))
            row = next(free, rows[0])
            spec = _spec(row)
            row.status, row.progress, row.error = "building", "starting", ""
        self.envs_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_file(spec.name)
        logfile.write_text(f"# build of {spec.name} at {utcnow().isoformat()}Z\n")
        forced = spec.name in self._forced
        self._forced.discard(spec.name)
        try:
            python = build.interpreter_for(spec.python, self.notebook_python)
            with build.building(self.envs_dir, spec.name, self._stop.is_set):
                reused = (
                    None if forced else build.reuse(self.envs_dir, spec.name, python, spec.packages)
                )
                if reused is not None:
                    with logfile.open("a") as f:
                        f.write("a finished build of this spec exists: reused\n")
                digest, contents = reused or build.build_named(
                    self.envs_dir,
                    spec.name,
                    python,
                    spec.packages,
                    logfile,
                    self._progress(spec.name),
                )
                build.remove_old_builds(self.envs_dir, spec.name)
        except Exception as err:  # noqa: BLE001 (a failed build is recorded, never raised)
            log.warning("building environment %s failed: %s", spec.name, err)
            with logfile.open("a") as f:
                f.write(f"\nFAILED: {err}\n")
            self._finish(spec, status="failed", error=str(err)[-2000:])
            return True
        self._finish(spec, status="ready", digest=digest, contents=contents)
        log.info("environment %s ready (%s)", spec.name, digest)
        return True

    def _progress(self, name: str) -> Callable[[str], None]:
        def say(step: str) -> None:
            with self.db.session() as s:
                row = s.scalar(select(Row).where(Row.name == name))
                if row is not None:
                    row.progress = step[:200]

        return say

    def _finish(
        self,
        spec: EnvironmentSpec,
        status: str,
        error: str = "",
        digest: str | None = None,
        contents: list[str] | None = None,
    ) -> None:
        with self.db.session() as s:
            row = s.scalar(select(Row).where(Row.name == spec.name))
            if row is None:
                return  # removed meanwhile
            if _spec(row) != spec:  # changed meanwhile: build again
                row.status = "queued"
            else:
                row.status, row.error = status, error
            row.progress = ""
            if digest is not None:
                row.built_hash, row.contents, row.built_at = digest, json.dumps(contents), utcnow()


def _canonical(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0]).lower()


def highlights(packages: list[str], contents: list[str]) -> list[str]:
    """``pandas 2.3.1``... for each package the spec names (and the kernel), as built."""
    wanted = {_canonical(p) for p in packages} | {"ipykernel", "lakehub"}
    return [c.replace("==", " ") for c in contents if _canonical(c) in wanted]


def _spec(row: Row) -> EnvironmentSpec:
    return EnvironmentSpec(row.name, row.description, row.python, tuple(json.loads(row.packages)))


def _row(spec: EnvironmentSpec, builtin: bool, actor: str) -> Row:
    row = Row(
        name=spec.name,
        builtin=builtin,
        status="queued",
        progress="",
        error="",
        contents="[]",
        updated_by=actor,
    )
    _update(row, spec, actor)
    return row


def _update(row: Row, spec: EnvironmentSpec, actor: str) -> None:
    row.description, row.python = spec.description, spec.python
    row.packages = json.dumps(list(spec.packages))
    row.updated_by, row.updated_at = actor, utcnow()
    if row.status != "building":
        row.status = "queued"
