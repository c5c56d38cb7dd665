"""What the API document promises, shared by every router.

Rules: every time in an answer carries its offset (``Instant``, shared with the areas' models in
:mod:`lakehub.server.schema`: the database keeps naive UTC, answers say ``...Z``); every refusal
is ``{"detail": "<readable text>"}`` and its status is in the document (``ERRORS``, given to each
router where the app includes it); 422 keeps FastAPI's list of field errors (without the refused
input, see :mod:`lakehub.server.web.guards`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from lakehub.server.schema import INT32, INT64, Instant

__all__ = ["ERRORS", "INT32", "INT64", "MAX_EXPIRY", "UPSTREAM", "Error", "Instant"]

MAX_EXPIRY = 10 * 365 * 86400  # seconds: a token's longest life


class Error(BaseModel):
    detail: str


def _error(what: str) -> dict[str, Any]:
    return {"model": Error, "description": what}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Bad request: the detail says what to change"),
    401: _error("No token, or an invalid or expired one"),
    403: _error("Not allowed for this user"),
    404: _error("No such object (or not visible to this user)"),
    409: _error("Conflicts with the current state (exists already, not active, in use)"),
    503: _error("A part of the hub (JupyterHub, the lake) is not answering"),
}
UPSTREAM: dict[int | str, dict[str, Any]] = {  # compute: what the cluster managers answer
    502: _error("The cluster manager (Dask Gateway, Spark) refused or failed"),
    504: _error("The cluster did not start in time"),
}
