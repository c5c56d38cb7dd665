"""A Dask scheduler preload (the gateway's clusters load it after dask-gateway's own): workers
that joined a cluster on their own, such as a worker on another host started with the cluster's
TLS credentials, are kept out of the gateway's count.

dask-gateway's scheduler keeps a cluster at the number of workers asked for and retires any
worker above it. A worker joined from elsewhere made one too many: it was retired at once, or
the gateway's own worker was and then started again, and the next round could take either.
The gateway names the workers it starts with 32 hexadecimal digits; a worker with any other
name joined on its own and is not counted, so neither it nor the gateway's workers are retired
for it. Scaling and adaptive scaling keep acting on the gateway's workers alone.
"""

from __future__ import annotations

import re
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

GATEWAY_NAME = re.compile(r"[0-9a-f]{32}")


class OutsideWorkers(SchedulerPlugin):
    name = "lakehub-outside-workers"

    def add_worker(self, scheduler: Any, worker: str) -> None:
        service = scheduler.services.get("gateway")
        state = scheduler.workers.get(worker)
        if service is None or state is None or GATEWAY_NAME.fullmatch(str(state.name)):
            return
        service.active_workers.discard(state.name)


def dask_setup(scheduler: Any) -> None:
    scheduler.add_plugin(OutsideWorkers())
