"""The AI library on the hub: its ten templates (:mod:`lakehub.ailib`) deployed in one step.

"Deploy" trains a template as its user, in the ``datascience`` environment, in a tracked run of
the experiment ``ai-library`` (on its shipped sample, or on a catalogued dataset the user reads:
the run then names it as its input), registers the version as ``ailib-<name>`` and serves it as
the endpoint ``ailib-<name>`` (made on the first deploy, rolled out to the new version on the
next). Training runs as a process of the user's account (when LakeHub runs as root), with the
user's lake keys and a token of theirs made for it (an hour long), never in the control plane:
forked from the environment's warm starter, as replicas are (:meth:`Runner.run_once`).
One training per user and template at a time, and ``AT_ONCE`` on the hub (the others wait,
``queued``); what happened to the last one is kept in memory (the runs and versions themselves
are in the registry).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable

from pydantic import BaseModel, Field

from lakehub.server.compute.spark_procs import private_dir
from lakehub.server.config import Settings
from lakehub.server.models.base import ModelsError, Reader
from lakehub.server.models.tracking import Tracking
from lakehub.server.notebooks.accounts import run_ids
from lakehub.server.notebooks.registry import Environments
from lakehub.server.serving.base import Runner, ServingError
from lakehub.server.serving.endpoints import Endpoints
from lakehub.server.serving.rollouts import log, run

ENVIRONMENT = "datascience"
TRAIN_TIMEOUT = 900.0
EXPERIMENT = "ai-library"
AT_ONCE = 2  # trainings running together: each takes a core


class Training(BaseModel):
    state: str = Field(description="queued, training, deploying, serving or failed")
    message: str
    dataset: str | None
    version: int | None
    started: float
    ended: float | None


class TemplateView(BaseModel):
    name: str
    title: str
    description: str
    columns: list[str] = Field(description="what a dataset needs to retrain it")
    endpoint: str = Field(description="the endpoint a deploy serves it as")
    training: Training | None = Field(description="your last deploy of it, if any")


class Library:
    def __init__(
        self,
        settings: Settings,
        environments: Environments,
        endpoints: Endpoints,
        runner: Runner,
        tracking: Tracking,
        job_env: Callable[[str], dict[str, str]],
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.tracking = tracking
        self.environments = environments
        self.endpoints = endpoints
        self.job_env = job_env  # owner -> their lake keys, API and MLflow tokens
        self._making = threading.Lock()  # the experiment, made by the first training only
        self._last: dict[tuple[str, str], Training] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None  # made on the loop that uses it

    def catalog(self, who: Reader) -> list[TemplateView]:
        from lakehub.ailib import templates

        return [
            TemplateView(
                name=t.name,
                title=t.title,
                description=t.description,
                columns=list(t.columns),
                endpoint=f"ailib-{t.name}",
                training=self._last.get((who.name, t.name)),
            )
            for t in templates().values()
        ]

    async def deploy(self, who: Reader, name: str, dataset: str | None = None) -> Training:
        from lakehub.ailib import templates

        if name not in templates():
            raise ServingError(
                f"the AI library has no {name!r} (it has {', '.join(templates())})", 404
            )
        key = (who.name, name)
        last = self._last.get(key)
        if last is not None and last.state in ("queued", "training", "deploying"):
            raise ServingError(f"{name} is being deployed already (since {last.started:.0f})", 409)
        if self.environments.path(ENVIRONMENT) is None:
            raise ServingError(
                f"the {ENVIRONMENT!r} environment is not built yet: try again soon", 409
            )
        job = Training(
            state="training",
            message="",
            dataset=dataset,
            version=None,
            started=time.time(),
            ended=None,
        )
        self._last[key] = job
        task = asyncio.get_running_loop().create_task(self._deploy(who, name, dataset, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _deploy(self, who: Reader, name: str, dataset: str | None, job: Training) -> None:
        endpoint = f"ailib-{name}"
        if self._slots is None:
            self._slots = asyncio.Semaphore(AT_ONCE)
        try:
            async with self._slots:
                job.state = "training"
                uri = await run(self._train, who.name, name, dataset)
            job.version = int(uri.rsplit("/", 1)[-1])
            job.state = "deploying"
            model = f"{endpoint}/{job.version}"
            try:
                await run(self.endpoints.view, who, endpoint)
            except ServingError:
                await self.endpoints.create(who, endpoint, model)
            else:
                await self.endpoints.update(who, endpoint, {"model": model})
            job.state = "serving"
        except Exception as err:  # noqa: BLE001 (the job says why; the hub goes on)
            job.state, job.message = "failed", str(err)
            log.warning("AI library %s for %s: %s", name, who.name, err)
        job.ended = time.time()

    def _train(self, owner: str, name: str, dataset: str | None) -> str:
        """Train and register as ``owner``; the registered version's URI. Blocks."""
        env_dir = self.environments.path(ENVIRONMENT)
        if env_dir is None:
            raise ServingError(f"the {ENVIRONMENT!r} environment is gone")
        python = env_dir / "bin" / "python"
        try:  # made here, one at a time: trainings started together would each try to make it
            with self._making:
                self.tracking.create_experiment(Reader(owner), EXPERIMENT, None)
        except ModelsError as err:
            if err.code != "RESOURCE_ALREADY_EXISTS":
                raise ServingError(str(err), err.status) from None
        argv = ["lakehub.ailib", "train", name]
        if dataset:
            argv += ["--dataset", dataset]
        home = self.settings.homes_dir / owner
        work = home / ".lakehub" / "ailib"
        # no project of the user's around it; made through no link the user planted
        os.close(private_dir(work, run_ids(self.settings, owner)))
        env = {
            "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
            "PYTHONUNBUFFERED": "1",
            **self.job_env(owner),
        }
        try:  # forked from the environment's warm starter, as its replicas are
            out = self.runner.run_once(python, argv, env, work, owner, TRAIN_TIMEOUT)
        except TimeoutError:
            raise ServingError(f"training took longer than {TRAIN_TIMEOUT:.0f} s") from None
        lines = out.strip().splitlines()
        if not lines or not lines[-1].startswith("models:/"):
            raise ServingError(f"training failed: {(lines or ['no output'])[-1]}")
        return lines[-1]
