"""Registered models, for what MLflow's own client does not say: every version's lineage, the
history of every alias, one-step rollback. Logging runs and registering models is MLflow's
client itself (``import mlflow``: set up in every notebook server)::

    import lakehub.models
    lakehub.models.list()                          # the models you can read
    m = lakehub.models.get("churn")                # versions, aliases, lineage, history
    m["versions"][0]["lineage"]["datasets"]
    lakehub.models.history("churn", "champion")    # who moved it, to which version, when
    lakehub.models.set_alias("churn", "champion", 3)
    lakehub.models.rollback("churn", "champion")   # back to the version it held before

A name is yours (``churn``) or an owner's (``team.churn``: a space's or another user's).
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lakehub.client import default

if TYPE_CHECKING:
    from lakehub.client import Client


def _path(name: str) -> str:
    return f"/api/models/{quote(name, safe='')}"


def list(client: Client | None = None) -> builtins.list[dict[str, Any]]:  # noqa: A001
    """The registered models you can read, most recently changed first."""
    found: builtins.list[dict[str, Any]] = default(client).request("GET", "/api/models")
    return found


def get(name: str, client: Client | None = None) -> dict[str, Any]:
    """A model with its versions (each with its lineage), aliases and their history."""
    out: dict[str, Any] = default(client).request("GET", _path(name))
    return out


def history(
    name: str, alias: str | None = None, client: Client | None = None
) -> builtins.list[dict[str, Any]]:
    """Every move of the model's aliases (or of ``alias``), oldest first."""
    params = {"alias": alias} if alias else {}
    out: builtins.list[dict[str, Any]] = default(client).request(
        "GET", _path(name) + "/history", params=params
    )
    return out


def set_alias(name: str, alias: str, version: int, client: Client | None = None) -> None:
    """Point ``alias`` at ``version`` (kept in the history)."""
    default(client).request(
        "PUT", f"{_path(name)}/aliases/{quote(alias, safe='')}", json={"version": version}
    )


def rollback(name: str, alias: str, client: Client | None = None) -> int:
    """Move ``alias`` back to the version it pointed to before its last move; that version."""
    out = default(client).request("POST", f"{_path(name)}/aliases/{quote(alias, safe='')}/rollback")
    return int(out["version"])
