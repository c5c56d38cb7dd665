"""Local accounts: passwords in LakeHub's database, sign-up with admin approval.

Runs inside the JupyterHub process. Sign-up and approval live in the portal
(``/services/lakehub/signup`` and ``/services/lakehub/admin``) and the CLI.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler
from traitlets import Unicode

from lakehub.server.db import Database
from lakehub.server.identity.users import check_password


class ReasonLoginHandler(LoginHandler):
    """JupyterHub's login page, saying *why* a login failed (e.g. waiting for approval)."""

    async def post(self) -> None:
        self._lakehub_reason = None
        await super().post()

    async def _render(self, login_error: Any = None, username: Any = None) -> Any:
        reason = getattr(self, "_lakehub_reason", None)
        return await super()._render(login_error=reason or login_error, username=username)


class LakeHubAuthenticator(Authenticator):
    db_url = Unicode(config=True, help="LakeHub's metadata database")
    _db: Database | None = None

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [("/login", ReasonLoginHandler)]

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        if self._db is None:
            self._db = Database(self.db_url)
        name = (data.get("username") or "").strip().lower()
        result = await asyncio.to_thread(check_password, self._db, name, data.get("password", ""))
        if isinstance(result, str):
            handler._lakehub_reason = result
            self.log.info("login refused for %r: %s", name[:32], result)
            return None
        # never JupyterHub's all-powerful admin: administrators get lakehub.server.notebooks.roles'
        return {"name": result.name, "admin": False}

    async def check_allowed(self, username: str, authentication: Any = None) -> bool:
        return True  # authenticate() only returns approved, active accounts
