"""The contract of the experiments-and-models area.

``ModelsError`` carries MLflow's error codes, so MLflow's own client understands every refusal
(it branches on ``RESOURCE_ALREADY_EXISTS`` and ``RESOURCE_DOES_NOT_EXIST``). ``ArtifactStore``
is where artifact files live: the lake by default (:class:`lakehub.server.models.artifacts.
LakeArtifacts`), always in the bucket of the experiment's or model's owner, so the owner's quota
counts them and the lake's own grants hold for whoever reads them there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "RESOURCE_ALREADY_EXISTS": 409,
    "TEMPORARILY_UNAVAILABLE": 503,
}


class ModelsError(Exception):
    def __init__(self, message: str, code: str = "INVALID_PARAMETER_VALUE") -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS.get(code, 400)


def missing(what: str) -> ModelsError:
    """What a caller may not see answers exactly as what does not exist."""
    return ModelsError(f"{what} does not exist", "RESOURCE_DOES_NOT_EXIST")


@dataclass(frozen=True)
class Reader:
    """Who acts: a user's name, and whether they administer the hub."""

    name: str
    admin: bool = False


@dataclass(frozen=True)
class FileInfo:
    path: str  # relative to the listed folder's root
    is_dir: bool
    size: int | None = None


class ArtifactStore(ABC):
    """Artifact files under ``(bucket, key)``; every call acts as ``who`` (their own keys where
    the store has per-user keys) and raises :class:`ModelsError` when refused."""

    @abstractmethod
    def put(self, who: Reader, bucket: str, key: str, body: BinaryIO) -> None: ...

    @abstractmethod
    def get(self, who: Reader, bucket: str, key: str) -> Iterator[bytes]: ...

    @abstractmethod
    def list(self, who: Reader, bucket: str, prefix: str) -> list[FileInfo]:
        """The files and folders directly under ``prefix`` (a folder, ending in ``/``)."""

    @abstractmethod
    def copy_tree(self, who: Reader, src: tuple[str, str], dst: tuple[str, str]) -> int:
        """Copy every file under the ``(bucket, prefix)`` ``src`` to ``dst``; the bytes copied."""

    @abstractmethod
    def download_tree(self, who: Reader, bucket: str, prefix: str, dest: Path) -> int:
        """Every file under ``prefix`` into the local folder ``dest`` (which exists); bytes."""

    @abstractmethod
    def delete_tree(self, bucket: str, prefix: str) -> int:
        """Remove every file under ``prefix`` (a folder ending in ``/``; else the file so named
        and the folder of that name), as the platform: deletion is the owner's choice, already
        checked; the bytes freed."""

    @abstractmethod
    def size(self, bucket: str, prefix: str) -> int:
        """The bytes under ``prefix`` (as the platform)."""
