"""A run's output notebook and log, from its attempt's folder into the owner's lake
(``jobs/<name>/runs/<id>/``), the folder removed after. Several runs' files go side by side: a
pass of the scheduler that closes many runs waits for the slowest write, not their sum."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

from lakehub.server.compute.spark_procs import read_beneath, remove_beneath
from lakehub.server.identity.users import home_bucket
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader

FILES = ("output.ipynb", "log.txt")
log = logging.getLogger("lakehub.jobs")


def store(files: ArtifactStore, outputs: list[tuple[str, str, Path]]) -> None:
    """Each (owner, lake prefix, attempt folder): its files put, the folder removed."""

    def put(item: tuple[str, str, Path, str]) -> None:
        owner, prefix, work, name = item
        try:
            data = read_beneath(work, name)  # never through a link the owner planted
        except OSError:
            return  # not written (a run that never started its code), or not a plain file
        try:
            files.put(Reader(owner), home_bucket(owner), prefix + name, BytesIO(data))
        except ModelsError as err:
            log.warning("keeping %s%s: %s", prefix, name, err)

    if not outputs:
        return
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, [(*o, name) for o in outputs for name in FILES]))
    for _, _, work in outputs:
        remove_beneath(work)
