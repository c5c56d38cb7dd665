"""Notebook environments: isolated virtual environments built with uv from a package spec.

An environment lives in ``envs/<name>-<hash>`` and ``envs/<name>`` is a symlink to the current
build, swapped atomically, so a failed build leaves the previous one usable. It is built from
``notebook_python`` (the system interpreter by default) so that per-user accounts can run it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import lakehub
from lakehub.runtime import find_binary

DEFAULT_PACKAGES = (
    "jupyterhub==6.1.1",
    "jupyterlab>=4.6,<5",
    "ipykernel",
    "pandas",
    "pyarrow",
    "duckdb",
    "polars",
    "s3fs==2026.9.0",
    "boto3==1.43.117",
    "httpx",
)


class BuildError(RuntimeError):
    pass


def project_root() -> Path:
    root = Path(lakehub.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise BuildError("the LakeHub SDK must be installed from a source checkout")
    return root


def uv_binary() -> str:
    found = find_binary("uv")
    if not found:
        raise BuildError("'uv' is missing: install the 'uv' package")
    return found


def spec_hash(python: str, packages: tuple[str, ...]) -> str:
    h = hashlib.sha256("\n".join((python, *packages)).encode())
    sdk = Path(lakehub.__file__).parent
    # the modules a notebook environment runs: the SDK and the warm starter
    for path in [*sorted(sdk.glob("*.py")), sdk / "notebooks" / "warm.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def ensure_environment(
    envs_dir: Path, name: str, python: str, packages: tuple[str, ...] = DEFAULT_PACKAGES,
    say: Callable[[str], None] = print,
) -> Path:  # fmt: skip
    """Return the environment's directory, building it first if its spec changed."""
    link = envs_dir / name
    target = envs_dir / f"{name}-{spec_hash(python, packages)}"
    if link.resolve() == target and (target / "bin" / "jupyterhub-singleuser").exists():
        return link
    if not Path(python).exists():
        raise BuildError(f"notebook interpreter {python} is missing (setting notebook_python)")
    envs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(envs_dir, 0o755)  # noqa: S103 (every user account runs these environments)
    say(f"building notebook environment {name!r} (once per change of its spec)...")
    uv = uv_binary()
    shutil.rmtree(target, ignore_errors=True)
    old_umask = os.umask(0o022)  # environments are read by every user's account
    try:
        _run([uv, "venv", "-q", "--python", python, str(target)])
        _run([uv, "pip", "install", "-q", "--python", str(target / "bin" / "python"),
              *packages, str(project_root())])  # fmt: skip
    except BuildError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        os.umask(old_umask)
    tmp = envs_dir / f".{name}.link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, link)
    say(f"notebook environment {name!r} ready")
    return link


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{' '.join(argv[:3])} failed: " + " | ".join(tail))
