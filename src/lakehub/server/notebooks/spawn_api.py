"""JupyterHub's own server API (``/hub/api/users/NAME/server[s/SERVER]``), with LakeHub's checks
first.

JupyterHub saves ``user_options`` in its database before any spawner hook runs, so options are
checked here, before the request reaches it: a server takes an ``environment`` and a ``size``
(names, checked by the control plane when it starts) and nothing else. Anything more, variables
above all, is refused with a 400 that says where it goes, and nothing of it is stored.
Variables are the user's own, kept (secret ones encrypted) by the control plane: the portal,
``lakehub env set`` and LakeHub's ``POST /api/servers`` save them there. Server names follow
the rule of every LakeHub name.

The handler comes in through the authenticator's ``get_handlers``, whose routes JupyterHub
matches before its own; :func:`checked` wraps whichever authenticator the hub uses.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.apihandlers.users import UserServerAPIHandler
from tornado import web

from lakehub.server.config import SettingsError, check_username

OPTIONS = ("environment", "size")
ROUTES = (r"/api/users/([^/]+)/server", r"/api/users/([^/]+)/servers/([^/]*)")


def check_options(options: Any) -> str | None:
    """Why ``options`` cannot start a server, or None."""
    if options is None:
        return None
    if not isinstance(options, dict):
        return "user_options must be an object"
    for key, value in options.items():
        if key not in OPTIONS:
            hint = (
                "; save variables with 'lakehub env set', the portal, or LakeHub's "
                "POST /services/lakehub/api/servers"
                if key in ("env", "environment_variables", "variables")
                else ""
            )
            return f"unknown server option {key!r}: a server takes {', '.join(OPTIONS)}{hint}"
        if not isinstance(value, str) or len(value) > 64:
            return f"server option {key!r} must be a name (a string)"
    return None


def check_server_name(name: str) -> str | None:
    if not name:
        return None
    try:
        check_username(name, "server")
    except SettingsError as err:
        return str(err)
    return None


class CheckedServerAPIHandler(UserServerAPIHandler):  # type: ignore[misc]
    def get_server_json_body(self) -> dict[str, Any]:
        body: dict[str, Any] = super().get_server_json_body()
        problem = check_options(body.get("user_options"))
        if problem is None and len(self.path_args) > 1:
            problem = check_server_name(self.path_args[1] or "")
        if problem:
            raise web.HTTPError(400, problem)
        return body


def checked(authenticator_class: type) -> type:
    """``authenticator_class`` with the checked server API among its handlers."""

    class Checked(authenticator_class):  # type: ignore[valid-type,misc]
        def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
            own = [(route, CheckedServerAPIHandler) for route in ROUTES]
            return [*own, *super().get_handlers(app)]

    Checked.__name__ = Checked.__qualname__ = authenticator_class.__name__
    return Checked
