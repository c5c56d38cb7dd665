"""The server's engines for Dask and Spark clusters (the SDK's side is lakehub.compute);
``compute_engines`` chooses the engine of each kind (contract: :mod:`.base`)."""

from __future__ import annotations

from lakehub.server.compute.base import Engine, EngineContext
from lakehub.server.config import SettingsError, resolve


def engines(hub: EngineContext) -> dict[str, Engine]:
    """The engine of each kind the settings name, built for this hub."""
    found = {}
    for kind, name in hub.settings.compute_engines.items():
        cls = resolve("compute engine", name, Engine)
        if getattr(cls, "kind", None) != kind:
            raise SettingsError(f"compute_engines: {name!r} is no engine of {kind} clusters")
        found[kind] = cls.of_hub(hub)
    return found
