"""Everything the control plane's requests share, built once by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import select

from lakehub.server.catalog import Catalog
from lakehub.server.compute.base import Engine
from lakehub.server.config import Settings
from lakehub.server.db import Database, User
from lakehub.server.identity.spaces import Spaces
from lakehub.server.identity.users import Directory
from lakehub.server.notebooks.policy import Policies
from lakehub.server.notebooks.registry import Environments
from lakehub.server.quotas import Quotas
from lakehub.server.runtime import Runtime, Tokens
from lakehub.server.vault import Vault
from lakehub.server.web.jhub import JupyterHubAPI
from lakehub.server.web.signup_limit import SignupLimit

T = TypeVar("T")


@dataclass
class AppState:
    settings: Settings
    runtime: Runtime
    tokens: Tokens
    vault: Vault
    db: Database
    directory: Directory
    hub: JupyterHubAPI
    spaces: Spaces
    catalog: Catalog
    quotas: Quotas
    environments: Environments
    policies: Policies
    compute: dict[str, Engine] = field(default_factory=dict)  # kind -> engine
    prefix: str = "/services/lakehub/"
    hub_oauth: Any = field(default=None)  # JupyterHub's OAuth client, made by hub.auth on first use
    _signup_limit: SignupLimit | None = field(default=None)

    @property
    def signup_limit(self) -> SignupLimit:
        if self._signup_limit is None:
            s = self.settings
            self._signup_limit = SignupLimit(s.signup_per_address, s.signup_per_minute)
        return self._signup_limit

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (database, lake, bcrypt) off the event loop."""
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    def directory_admin_flag(self, name: str) -> bool:
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            known = None if user is None else (user.admin, user.status)
        if self.settings.auth == "local":
            return known == (True, "active")
        # LDAP/OAuth users exist here from their first request; listed admins stay admins
        listed = name in (
            self.settings.ldap_admin_users
            if self.settings.auth == "ldap"
            else self.settings.oauth_admin_users
        )
        if known is None or (listed and not known[0]):
            self.directory.ensure_external(name, admin=True if listed else None)
            return listed
        return known == (True, "active")
