"""The data lake: an S3 endpoint with one identity per user (see
:mod:`lakehub.server.lake.base`); ``lake_backend`` chooses the implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehub.server.config import Settings, resolve
from lakehub.server.lake.base import Lake

if TYPE_CHECKING:
    from lakehub.server.runtime import Runtime, Tokens


def lake_class(settings: Settings) -> type[Lake]:
    """The lake implementation the settings choose; ``SettingsError`` if there is none."""
    return resolve("lake", settings.lake_backend, Lake)


def open_lake(settings: Settings, runtime: Runtime, tokens: Tokens) -> Lake:
    """The configured lake of a running hub, as every process of the hub sees it."""
    return lake_class(settings).of_hub(settings, runtime, tokens)
