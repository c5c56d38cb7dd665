"""The platform: every service of the control plane, built once from the settings, and the
operations that span several areas.

Rules: ``Platform.build`` is the one place that wires the services (the metadata database, the
vault, the lake, the directory, spaces, catalog, quotas, environments, policies, the compute
engines, JupyterHub's API); the web layer gets a built platform (``create_app(platform)``) and
never wires anything itself. An operation that touches more than one area (removing a user, what
a spawn gets, every server and cluster the planner sees) lives here, not in a router, so each
router and each engine reaches it the same way. Nothing here imports the web layer. Building
starts nothing: ``start()`` starts the background loops, ``close()`` stops them and releases
connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import anyio.from_thread
import anyio.to_thread
from sqlalchemy import select

from lakehub.server.catalog import Catalog
from lakehub.server.compute import engines
from lakehub.server.compute.base import (
    ClusterRequest,
    ComputeError,
    Engine,
    EngineContext,
    Running,
    Runnings,
)
from lakehub.server.compute.dask_gateway import notebook_env as dask_notebook_env
from lakehub.server.compute.plan import ComputePlan, plan
from lakehub.server.config import Settings, load_settings
from lakehub.server.connections import Connections
from lakehub.server.db import Database, User
from lakehub.server.identity.envvars import EnvVars
from lakehub.server.identity.spaces import Spaces
from lakehub.server.identity.users import Directory, UserError
from lakehub.server.ingest import registry as ingest_registry
from lakehub.server.jobs.base import Clock
from lakehub.server.jobs.jobs import Jobs
from lakehub.server.jobs.local import LocalExecutor
from lakehub.server.jobs.notices import Notices, SmtpMailer
from lakehub.server.jobs.scheduler import Scheduler
from lakehub.server.lake import open_lake
from lakehub.server.models.artifacts import LakeArtifacts
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader
from lakehub.server.models.purge import Purge
from lakehub.server.models.registry import Registry
from lakehub.server.models.tracking import Tracking
from lakehub.server.notebooks import metrics as notebook_metrics
from lakehub.server.notebooks import records
from lakehub.server.notebooks.accounts import account_exists, ensure_account, remove_account
from lakehub.server.notebooks.aws_profiles import AwsProfiles
from lakehub.server.notebooks.culling import cull_count
from lakehub.server.notebooks.jupyterhub_api import HubAPIError, JupyterHubAPI
from lakehub.server.notebooks.policy import Policies
from lakehub.server.notebooks.registry import Environments
from lakehub.server.ops import opendata
from lakehub.server.ops.monitor import Monitoring
from lakehub.server.ops.opendata import OpenData
from lakehub.server.publish.base import PublishError
from lakehub.server.publish.published import Publications, PublicationView, check_name
from lakehub.server.publish.render import ProcessRenderer
from lakehub.server.quotas import Quotas
from lakehub.server.runtime import Runtime, Tokens, load_runtime, settled, tokens
from lakehub.server.serving import metrics as serving_metrics
from lakehub.server.serving.ailib import Library
from lakehub.server.serving.endpoints import Endpoints
from lakehub.server.serving.local import LocalRunner
from lakehub.server.serving.rollouts import Rollouts
from lakehub.server.serving.samples import Samples
from lakehub.server.vault import Vault

T = TypeVar("T")
CLUSTER_TOKEN_TTL = 7 * 86400  # seconds: the MLflow token a cluster's processes get
log = logging.getLogger("lakehub.api")


@dataclass
class Platform:
    settings: Settings
    runtime: Runtime
    tokens: Tokens
    vault: Vault
    db: Database
    directory: Directory
    hub: JupyterHubAPI
    spaces: Spaces
    catalog: Catalog
    quotas: Quotas
    environments: Environments
    policies: Policies
    tracking: Tracking
    registry: Registry
    model_files: ArtifactStore
    purge: Purge
    serving: Endpoints
    library: Library = field(init=False)
    jobs: Jobs = field(init=False)
    published: Publications = field(init=False)
    monitoring: Monitoring = field(init=False)
    open_data: OpenData = field(init=False)
    compute: dict[str, Engine] = field(default_factory=dict)  # kind -> engine
    prefix: str = "/services/lakehub/"
    hub_oauth: Any = field(default=None)  # JupyterHub's OAuth client, made by web.auth on first use

    @classmethod
    def build(cls, settings: Settings | None = None, runtime: Runtime | None = None) -> Platform:
        """Every service over ``settings`` (loaded when not given) and the hub's ``runtime``
        (its ports: read from the running hub when not given)."""
        settings = settings or load_settings()
        runtime = runtime or load_runtime(settings)
        if runtime is None:
            raise RuntimeError(f"no running hub in {settings.data_dir}: start it with 'lakehub up'")
        tok = tokens(settings)
        vault = Vault(settings.state_dir)
        db = Database(settings.database_url)
        # the receivers take a revoked grant, a deleted source or user into account at once
        db.on_change.append(partial(ingest_registry.mark_changed, settings.ingest_dir))
        directory = Directory(db, vault, open_lake(settings, runtime, tok))
        environments = Environments(db, settings.envs_dir, settings.notebook_python)
        grace_ms = settings.models_delete_grace * 1000
        tracking = Tracking(db, grace_ms)
        model_files = LakeArtifacts(directory)
        registry = Registry(db, tracking, model_files, grace_ms)
        runner = LocalRunner(settings)  # model replicas, and the AI library's trainings
        catalog = Catalog(directory)
        policies = Policies(
            directory, environments, settings.cull_idle_timeout, settings.notebook_max_servers
        )
        platform = cls(
            settings=settings,
            runtime=runtime,
            tokens=tok,
            vault=vault,
            db=db,
            directory=directory,
            hub=JupyterHubAPI(runtime.hub_api_url, tok.service),
            spaces=Spaces(directory),
            catalog=catalog,
            quotas=Quotas(directory),
            environments=environments,
            policies=policies,
            tracking=tracking,
            registry=registry,
            model_files=model_files,
            purge=Purge(db, model_files, grace_ms),
            serving=Endpoints(
                Rollouts(db, registry, model_files, runner, environments, policies),
                Samples(model_files, catalog, settings.serving_sample_rate),
            ),
        )
        platform.compute.update(engines(platform.engine_context()))
        platform.library = Library(
            settings, environments, platform.serving, runner, tracking, platform.job_env
        )
        mailer = SmtpMailer.of(settings)
        notices = Notices(db, vault, settings.jobs_webhook_hosts, Clock(), mailer)
        platform.jobs = Jobs(
            Scheduler(
                db,
                LocalExecutor(settings),
                environments,
                policies,
                model_files,
                platform.job_env,
                notices,
            )
        )
        platform.published = Publications(db, model_files, vault, ProcessRenderer())
        platform.monitoring = Monitoring(settings, runtime, db, mailer.send if mailer else None)
        parts = (directory, platform.spaces, catalog, model_files, platform.jobs)
        platform.open_data = opendata.for_platform(settings, db, platform.monitoring.store, *parts)
        return platform

    async def start(self) -> None:
        """The background loops: quota measurement, environment builds, the engines."""
        self.quotas.start()
        self.purge.start()
        await self.run(self.environments.sync_builtins)
        # after the hub's start: a build's CPU would slow it
        self.environments.start(partial(settled, self.settings))
        for engine in self.compute.values():
            await self.run(engine.open)
        await self.serving.start()
        self.jobs.scheduler.start()
        await self.run(self.published.start)
        self.monitoring.start()
        if self.monitoring.running:
            self.open_data.start()

    async def close(self) -> None:
        await self.run(self.open_data.stop)
        await self.run(self.monitoring.close)
        await self.jobs.scheduler.stop()
        await self.run(self.published.stop)
        await self.serving.close()
        await self.run(self.quotas.stop)
        await self.run(self.purge.stop)
        await self.run(self.environments.stop)
        await self.hub.aclose()
        for engine in self.compute.values():
            await self.run(engine.close)
        self.db.engine.dispose()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (database, lake, bcrypt) off the event loop."""
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    def directory_admin_flag(self, name: str) -> bool:
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            known = None if user is None else (user.admin, user.status)
        if self.settings.auth == "local":
            return known == (True, "active")
        # LDAP/OAuth users exist here from their first request; listed admins stay admins
        listed = name in (
            self.settings.ldap_admin_users
            if self.settings.auth == "ldap"
            else self.settings.oauth_admin_users
        )
        if known is None or (listed and not known[0]):
            self.directory.ensure_external(name, admin=True if listed else None)
            return listed
        return known == (True, "active")

    # connections and the notebook files they feed ---------------------------------------------
    def profiles(self) -> AwsProfiles:
        python = self.settings.envs_dir / "default" / "bin" / "python"
        return AwsProfiles(
            self.settings.data_dir / "aws",
            self.directory.lake.endpoint_url,
            str(python),
            self.settings.isolated,
        )

    def connections(self) -> Connections:
        """The connections area, rewriting an owner's AWS config file on every change."""
        files = self.profiles()

        def refresh(owner: str) -> None:
            try:
                files.write(owner, conns.owned_by(owner))
            except OSError as err:  # the change stands; the next spawn writes the file again
                log.warning("cannot write %s's AWS config file: %s", owner, err)

        conns = Connections(self.directory, refresh)
        return conns

    def connections_env(self, name: str) -> dict[str, str]:
        """Write ``name``'s AWS config file before a spawn; the variables that point at it."""
        if self.settings.isolated:
            ensure_account(name, Path(self.settings.homes_dir) / name)
        path = self.profiles().write(name, self.connections().owned_by(name), must=True)
        return {"AWS_CONFIG_FILE": str(path)}

    # operations across areas ------------------------------------------------------------------
    def publish_from(
        self, who: Reader, name: str, source: dict[str, Any], opts: dict[str, Any]
    ) -> PublicationView:
        """Publish a notebook in the lake (``lake``: ``s3://bucket/key``, read as ``who``) or
        the output of one of ``who``'s job runs (``job`` and ``run``)."""
        check_name(name)
        if source.get("lake"):
            bucket, _, key = str(source["lake"]).removeprefix("s3://").partition("/")
            if not bucket or not key.endswith(".ipynb"):
                raise PublishError("a notebook in the lake: s3://bucket/path/name.ipynb")
            try:
                body = b"".join(self.model_files.get(who, bucket, key))
            except ModelsError:
                raise PublishError(
                    f"there is no notebook you may read at s3://{bucket}/{key}", 404
                ) from None
            what = f"s3://{bucket}/{key}"
        elif source.get("job") and source.get("run"):
            job, run = str(source["job"]), int(source["run"])
            body = self.jobs.output(who, job, run, "output.ipynb")
            what = f"job {job}, run {run}"
        else:
            raise PublishError("publish what? a notebook in the lake (lake) or a run (job and run)")
        return self.published.publish(who, name, BytesIO(body), len(body), what, opts)

    async def remove_user(self, name: str, actor: str) -> None:
        """Everything of the user stops, then goes: servers, endpoints they made, clusters, the
        processes left running as their account, the account, their lake identity and record;
        their data stays. The record goes last, so a removal cut short (a server that would not
        stop) is finished by the next one."""
        known = await self.run(self.directory.exists, name)
        if known:
            await self.run(self.directory.check_removable, name)  # before anything stops
        elif not (self.settings.isolated and account_exists(name)) and not (
            await self.hub.user(name)
        ):
            raise UserError(f"no user named {name!r}", 404)
        await self.hub.delete_user(name)  # JupyterHub stops their servers first
        await self.serving.remove_creator(name)  # their endpoints' replicas run as them
        await self.run(self.jobs.remove_owner, name)  # and their jobs
        await self.run(self.published.remove_owner, name)  # their pages: their lake goes too
        for engine in self.compute.values():
            try:
                for cluster in await self.run(engine.list, name):
                    await self.run(engine.stop, name, cluster.name)
            except ComputeError as err:  # their processes run as their account: stopped next
                log.warning("cannot stop %s's %s clusters: %s", name, engine.kind, err)
        if self.settings.isolated:
            try:
                await self.run(remove_account, name)
            except RuntimeError as err:
                raise UserError(f"{err}; try again", 503) from None
        self.profiles().remove(name)
        if known:
            await self.run(self.directory.delete, name, actor)

    async def spawn_env(self, name: str) -> dict[str, str]:
        """What a user's server gets in its environment from the control plane."""
        if self.settings.auth != "local":
            await self.run(self.directory.ensure_external, name)
        else:
            await self.run(self.directory.provision, name)
        creds = await self.run(self.directory.credentials, name)
        own = await self.run(EnvVars(self.directory).environment, name)
        # the user's own variables first: LakeHub's win over any of the same name
        # the region is the AWS config file's [default] (AWS_DEFAULT_REGION would override every
        # named profile's); see lakehub.server.notebooks.aws_profiles
        return {
            **own,
            "AWS_ACCESS_KEY_ID": creds.access_key_id,
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
            "AWS_ENDPOINT_URL": creds.endpoint_url,
            "S3_ENDPOINT_URL": creds.endpoint_url,
            "LAKEHUB_BUCKET": creds.bucket,
            "LAKEHUB_API_URL": self.runtime.api_url,
            "LAKEHUB_FRONT_URL": self.runtime.front_url,  # what a browser opens (published pages)
            "MLFLOW_TRACKING_URI": f"{self.runtime.api_url}/mlflow",
            "MLFLOW_DISABLE_TELEMETRY": "true",  # the hub may have no internet, and owes none
            **dask_notebook_env(self.runtime, self.settings.compute_bind),
            **await self.run(self.connections_env, name),
        }

    def mlflow_env(
        self, owner: str, ttl: int = CLUSTER_TOKEN_TTL, note: str = "MLflow from clusters"
    ) -> dict[str, str]:
        """What a cluster's (or a job's) processes need to log to MLflow as ``owner``: the
        tracking URI and a token of theirs, minted for it (it expires after ``ttl`` seconds:
        a week for a cluster); nothing if JupyterHub refuses one. Blocks."""
        try:
            token = self.hub.new_token_now(owner, f"{note} (LakeHub)", ttl)
        except HubAPIError as err:  # the cluster starts all the same, without MLflow
            log.warning("no MLflow token for %s's cluster: %s", owner, err)
            return {}
        return {
            "MLFLOW_TRACKING_URI": f"{self.runtime.api_url}/mlflow",
            "MLFLOW_TRACKING_TOKEN": token,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    def job_env(self, owner: str) -> dict[str, str]:
        """What a job run as ``owner`` gets: their lake keys, and a token of theirs (an hour
        long) for the LakeHub API and MLflow. Blocks."""
        creds = self.directory.credentials(owner)
        tracking = self.mlflow_env(owner, ttl=3600, note="a job")
        return {
            "AWS_ACCESS_KEY_ID": creds.access_key_id,
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
            "AWS_ENDPOINT_URL": creds.endpoint_url,
            "LAKEHUB_BUCKET": creds.bucket,
            "LAKEHUB_API_URL": self.runtime.api_url,
            "LAKEHUB_FRONT_URL": self.runtime.front_url,
            "LAKEHUB_TOKEN": tracking.get("MLFLOW_TRACKING_TOKEN", ""),
            **tracking,
            **dask_notebook_env(self.runtime, self.settings.compute_bind),  # its run's cluster
        }

    async def active_servers(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every running or starting server with what it was started with (its record, which
        has the size a server got by default; else the options it was asked with)."""
        active = await self.hub.active_servers()
        run_dir = self.settings.run_dir
        return {
            user: {
                name: {**opts, **records.read(run_dir, user, name)}
                for name, opts in servers.items()
            }
            for user, servers in active.items()
        }

    async def running_everywhere(self, kind: str, reported: list[dict[str, Any]]) -> list[Running]:
        """Every server and cluster of the hub, with the most memory each may use."""
        memory = {z.name: z.memory for z in await self.run(self.policies.sizes)}
        found = [
            Running(user, "server", name or "default", memory.get(str(opts.get("size")), 0))
            for user, servers in (await self.active_servers()).items()
            for name, opts in servers.items()
        ]
        found += [Running(r["owner"], kind, r["name"], int(r.get("memory") or 0)) for r in reported]
        for other, engine in self.compute.items():
            if other != kind:
                found += await self.run(engine.running)
        return found

    async def metrics_page(self) -> bytes:
        """The control plane's ``/metrics``: its figures, the endpoints' and JupyterHub's."""
        clusters = [r for e in self.compute.values() for r in await self.run(e.running)]
        page = await self.run(self.monitoring.page, await self.active_servers(), clusters)
        hub_text, running = await self.hub.metrics(), await self.hub.ready_servers()
        page += notebook_metrics.render(hub_text, running, cull_count(self.settings.run_dir))
        return page + serving_metrics.render(self.serving.by_id.values())

    def engine_context(self) -> EngineContext:
        """What the engines are built from: the owner's lake keys, the planner (every start
        checked against the owner's limits, every engine's clusters counted), the
        environments."""
        directory = self.directory

        def lake_env(owner: str) -> dict[str, str]:
            creds = directory.credentials(owner)
            return {
                "AWS_ACCESS_KEY_ID": creds.access_key_id,
                "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
                "AWS_ENDPOINT_URL": creds.endpoint_url,
                "LAKEHUB_BUCKET": creds.bucket,
                **self.mlflow_env(owner),
            }

        def check(
            owner: str, kind: str, request: ClusterRequest, mine: Runnings, head_memory: int
        ) -> ComputePlan:
            """Runs in a worker thread of the app (engines block): the planner's view of every
            server and cluster comes from the event loop."""
            reported = [{"owner": r.owner, "name": r.name, "memory": r.memory} for r in mine]
            running = anyio.from_thread.run(self.running_everywhere, kind, reported)
            verdict = plan(
                self.settings,
                self.policies,
                owner,
                self.directory_admin_flag(owner),
                kind,
                request.cores,
                request.memory,
                running,
                request.idle_timeout,
                0,
                head_memory,
            )
            if request.workers > verdict.cluster_max_workers:
                raise ComputeError(
                    f"you may have up to {verdict.cluster_max_workers} {kind.capitalize()} "
                    f"workers of this size now (asked: {request.workers})",
                    403,
                )
            return verdict

        return EngineContext(
            settings=self.settings,
            runtime=self.runtime,
            service_token=self.tokens.service,
            lake_env=lake_env,
            plan=check,
            environment=self.environments.path,
            ui_url=f"{self.runtime.front_url}{self.prefix}compute",
            lake_endpoint=self.directory.lake.endpoint_url,
        )
