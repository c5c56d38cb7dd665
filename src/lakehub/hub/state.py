"""Everything the control plane's requests share, built once by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import select

from lakehub.config import Settings
from lakehub.hub.db import Database, User
from lakehub.hub.jhub import JupyterHubAPI
from lakehub.runtime import Runtime, Tokens
from lakehub.users import Directory
from lakehub.vault import Vault

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
    prefix: str = "/services/lakehub/"
    hub_auth: Any = field(default=None)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (database, lake, bcrypt) off the event loop."""
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    def directory_admin_flag(self, name: str) -> bool:
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is not None:
                return user.admin and user.status == "active"
        if self.settings.auth != "local":
            self.directory.ensure_external(name)
        return False
