"""Each user's AWS config file: the lake as ``[default]``, every connection as a named profile.

A notebook server gets ``AWS_CONFIG_FILE`` pointing here, so boto3, s3fs (and pandas through
it) understand ``profile_name="NAME"`` / ``storage_options={"profile": "NAME"}``. The file holds
no secret: a profile's keys come from ``credential_process``, which asks the control plane with
the server's own token each time a new session needs them. The hub rewrites the file whenever
the user's connections change, so new ones work in running servers without a restart.

The lake's keys are in ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, which botocore ignores
when a profile is named explicitly. Its region is ``[default]``'s, not ``AWS_DEFAULT_REGION``,
which would override every profile's. Its endpoint is also in ``AWS_ENDPOINT_URL`` (pyarrow reads
only that), which botocore would let override every profile's too: each profile written here
carries a ``lakehub_connection`` key, and :mod:`lakehub.singleuser.profile_endpoints` makes such
profiles keep their own endpoint.

Files live in ``<data_dir>/aws/<user>.config``: the folder belongs to the hub (mode 0711, so
nobody can plant links in it), each file is readable by its user's account only (0640, group
``lh-<user>``) and by nobody else.
"""

from __future__ import annotations

import os
import pwd
import shlex
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from lakehub.server.notebooks.accounts import unix_name

MARKER = "lakehub_connection"  # what lakehub.singleuser.profile_endpoints looks for
HEADER = "# Written by LakeHub; rewritten when your connections change: do not edit.\n"


class Profile(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def endpoint_url(self) -> str: ...
    @property
    def region(self) -> str: ...


def render(lake_endpoint: str, profiles: Iterable[Profile], python: str) -> str:
    lines = [HEADER, "[default]", f"endpoint_url = {lake_endpoint}", "region = us-east-1", ""]
    for p in profiles:
        command = shlex.join([python, "-m", "lakehub.singleuser.credential_process", p.name])
        lines += [
            f"[profile {p.name}]",
            f"endpoint_url = {p.endpoint_url}",
            f"region = {p.region}",
            f"credential_process = {command}",
            f"{MARKER} = {p.name}",
            "",
        ]
    return "\n".join(lines)


class AwsProfiles:
    def __init__(self, folder: Path, lake_endpoint: str, python: str, isolated: bool) -> None:
        self.folder = folder
        self.lake_endpoint = lake_endpoint
        self.python = python
        self.isolated = isolated

    def path(self, user: str) -> Path:
        return self.folder / f"{user}.config"

    def write(self, user: str, profiles: Iterable[Profile], must: bool = False) -> Path | None:
        """Write ``user``'s file. Isolated users without an account yet get it at their first
        spawn instead (``must=True`` there, after the account is made)."""
        gid = None
        if self.isolated:
            try:
                gid = pwd.getpwnam(unix_name(user)).pw_gid
            except KeyError:
                if must:
                    raise
                return None
        self.folder.mkdir(mode=0o711, exist_ok=True)
        os.chmod(self.folder, 0o711)  # noqa: S103 (users reach their own file, list nothing)
        path = self.path(user)
        text = render(self.lake_endpoint, profiles, self.python).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if gid is not None:
                os.fchown(fd, -1, gid)
                os.fchmod(fd, 0o640)
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return path

    def remove(self, user: str) -> None:
        self.path(user).unlink(missing_ok=True)
