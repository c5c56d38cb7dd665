"""Secrets at rest: a Fernet key in the state directory encrypts everything secret in the database.

Infrastructure tokens (proxy, service, lake admin) live in files readable by the hub's account only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


def write_private(path: Path, data: bytes) -> None:
    """Atomically write a file only the hub's account can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_or_create(path: Path, make: bytes | None = None) -> str:
    """Return the token stored at ``path``, creating a random one (mode 0600) the first time."""
    if not path.exists():
        write_private(path, make or secrets.token_hex(32).encode())
    return path.read_text().strip()


class Vault:
    def __init__(self, state_dir: Path) -> None:
        key = read_or_create(state_dir / "secret.key", Fernet.generate_key())
        self._fernet = Fernet(key.encode())

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with this hub's key") from None
