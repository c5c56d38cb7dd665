"""Notebook environments: virtual environments built with uv from a spec.

Two kinds, built the same way:
- the *server* environment (``envs/default``): JupyterLab and JupyterHub's single-user server,
  built by ``lakehub up``; every notebook server runs from it, forked by the warm starter;
- *named* environments (``minimal``, ``datascience``... see ``specs.py``): what kernels,
  terminals and ``pip`` run. Each carries ipykernel, pip, the LakeHub SDK and a kernel spec named
  ``python3`` that the server finds first through ``JUPYTER_PATH``. They are built in the
  background by the control plane (``registry.py``).

A build lives in ``envs/<name>-<hash>`` and ``envs/<name>`` is a symlink to the current one,
swapped atomically, so a failed build leaves the previous one usable. Builds use an interpreter
of the system (``/usr/bin/python3.X``) so that per-user accounts can run them.

``pip install --user`` must work and persist per user and environment: pip refuses ``--user`` in
a virtual environment that hides the system's site-packages, so named environments are made with
``--system-site-packages`` and a ``usercustomize`` module drops the system's directories from
``sys.path`` again once the user's own (``PYTHONUSERBASE``, set per environment by the spawner)
is in place. Imports resolve user site, then the environment, and nothing of the system.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import lakehub
from lakehub.server.notebooks.specs import overrides
from lakehub.server.runtime import find_binary
from lakehub.singleuser import lab_settings

DEFAULT_PACKAGES = (  # the server environment
    "jupyterhub==6.1.1",
    "jupyterlab>=4.6,<5",
    "ipykernel",
    "boto3==1.43.117",
    "httpx",
)
BUILD_TIMEOUT = 1800  # seconds for one uv step
BUILD_NICE = 10  # builds run in the background, below the hub's own processes
BUILD_ID = re.compile(r"[0-9a-f]{12}(-[0-9a-f]{3})?")  # a spec hash, and a rebuild's suffix


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


def sdk_sources() -> list[Path]:
    """The modules a notebook environment runs: the SDK (its arrays and compute parts too:
    kernels call lakehub.arrays and lakehub.compute), what runs in a user's server, and the warm
    starter."""
    sdk = Path(lakehub.__file__).parent
    return [
        *sorted(sdk.glob("*.py")),
        *sorted((sdk / "arrays").glob("*.py")),
        *sorted((sdk / "compute").glob("*.py")),
        *sorted((sdk / "singleuser").glob("*.py")),
        sdk / "server" / "notebooks" / "warm.py",
    ]


# How environments are built, in the build identity: a change here rebuilds them. Installs are
# compiled to bytecode: users' accounts cannot write __pycache__ into a shared environment, so
# without it every kernel, server and Dask worker compiles its imports again (distributed and
# dask.dataframe: 6-10 s instead of 1.6-2 s here).
BUILD_FLAGS = ("--compile-bytecode",)


def uv_overrides() -> Path:
    """What no LakeHub install takes (``uv pip install --override``; see the file)."""
    return project_root() / "uv-overrides.txt"


def sdk_dependencies() -> list[str]:
    """What the SDK itself needs (``[project] dependencies``), installed in every environment."""
    with open(project_root() / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def spec_hash(python: str, packages: tuple[str, ...]) -> str:
    """The build's identity: how it is built, interpreter, packages and the SDK's own source."""
    from lakehub.server.notebooks.specs import KERNEL_PACKAGES

    h = hashlib.sha256("\n".join((*BUILD_FLAGS, python, *packages, *KERNEL_PACKAGES)).encode())
    h.update("\n".join(sdk_dependencies()).encode())
    h.update(uv_overrides().read_bytes())
    sdk = Path(lakehub.__file__).parent
    for path in sdk_sources():
        h.update(str(path.relative_to(sdk)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def ensure_environment(
    envs_dir: Path,
    name: str,
    python: str,
    packages: tuple[str, ...] = DEFAULT_PACKAGES,
    say: Callable[[str], None] = print,
) -> Path:
    """Return the environment's directory, building it first if its spec changed."""
    link = envs_dir / name
    target = envs_dir / f"{name}-{spec_hash(python, packages)}"
    if link.resolve() == target and (target / "bin" / "jupyterhub-singleuser").exists():
        return link
    if not Path(python).exists():
        raise BuildError(f"notebook interpreter {python} is missing (setting notebook_python)")
    envs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(envs_dir, 0o755)  # noqa: S103 (every user account runs these environments)
    with building(envs_dir, name):  # hubs sharing envs_dir: the first builds, the others wait
        if link.resolve() == target and (target / "bin" / "jupyterhub-singleuser").exists():
            return link
        return _build_server_environment(envs_dir, name, python, packages, say)


def _build_server_environment(
    envs_dir: Path, name: str, python: str, packages: tuple[str, ...], say: Callable[[str], None]
) -> Path:
    link = envs_dir / name
    target = envs_dir / f"{name}-{spec_hash(python, packages)}"
    say(f"building notebook environment {name!r} (once per change of its spec)...")
    uv = uv_binary()
    shutil.rmtree(target, ignore_errors=True)
    old_umask = os.umask(0o022)  # environments are read by every user's account
    try:
        _run([uv, "venv", "-q", "--python", python, str(target)])
        _run(
            [
                uv,
                "pip",
                "install",
                "-q",
                *BUILD_FLAGS,
                "--override",
                str(uv_overrides()),
                "--python",
                str(target / "bin" / "python"),
                *packages,
                str(project_root()),
            ]
        )
        settings = target / "share" / "jupyter" / "lab" / "settings"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "overrides.json").write_text(json.dumps(lab_settings.OVERRIDES, indent=1))
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


def _run(argv: list[str], log: Path | None = None) -> str:
    """Run a build step; its output goes to ``log`` (appended) when given."""
    try:  # niced: what people wait for (the portal, the API, their servers) comes first
        proc = subprocess.run(
            ["nice", "-n", str(BUILD_NICE), *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{' '.join(argv[:3])} took over {BUILD_TIMEOUT} s") from None
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{' '.join(argv[:3])} failed: " + " | ".join(tail))
    return proc.stdout


def interpreter_for(version: str, default: str) -> str:
    """A system interpreter for Python ``version`` ("3.11"): ``default`` if it is that version,
    else ``/usr/bin/python<version>``."""
    if Path(default).exists():
        proc = subprocess.run(
            [default, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.stdout.strip() == version:
            return default
    candidate = f"/usr/bin/python{version}"
    if Path(candidate).exists():
        return candidate
    raise BuildError(
        f"Python {version} is not installed on this machine (notebook_python is {default})"
    )


USERCUSTOMIZE = """\
# Written by LakeHub: keep the system's site-packages out of this environment (see
# lakehub.server.notebooks.environments). The user's own site-packages stay first.
import site as _site
import sys as _sys

_system = tuple(_site.getsitepackages([_sys.base_prefix]))
_sys.path[:] = [p for p in _sys.path if not p.startswith(_system)]
"""


def build_named(
    envs_dir: Path,
    name: str,
    python: str,
    packages: tuple[str, ...],
    log: Path,
    progress: Callable[[str], None],
) -> tuple[str, list[str]]:
    """Build a named environment (kernel, pip, SDK, ``packages``) from interpreter ``python``;
    make it current. Returns the build's id (the spec hash, plus a suffix when that build exists
    already) and its contents (``name==version`` lines).

    A build never touches another: a rebuild of the same spec goes to a directory of its own, so
    servers running the current build keep it, whether the rebuild succeeds or fails."""
    from lakehub.server.notebooks.specs import KERNEL_PACKAGES

    digest = build_id = spec_hash(python, packages)
    while (envs_dir / f"{name}-{build_id}").exists():
        build_id = f"{digest}-{secrets.token_hex(2)[:3]}"
    target = envs_dir / f"{name}-{build_id}"
    envs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(envs_dir, 0o755)  # noqa: S103 (every user account runs these environments)
    uv = uv_binary()
    env_python = str(target / "bin" / "python")
    # Spark's JVMs start faster from class-data archives made once here (lakehub.compute.spark_cds)
    spark = any(re.match(r"pyspark\b", p) for p in packages) and shutil.which("java") is not None
    steps = 5 if spark else 4
    old_umask = os.umask(0o022)
    try:
        progress(f"1/{steps} creating the virtual environment")
        _run([uv, "venv", "--system-site-packages", "--python", python, str(target)], log)
        progress(f"2/{steps} installing {len(packages)} packages, the kernel and the SDK")
        install = [
            uv,
            "pip",
            "install",
            *BUILD_FLAGS,
            "--override",
            str(uv_overrides()),
            "--python",
            env_python,
            *packages,
            *KERNEL_PACKAGES,
            str(project_root()),
        ]
        pinned = overrides(packages)
        if pinned:
            _write_new(target / "overrides.txt", "\n".join(pinned) + "\n")
            install += ["--override", str(target / "overrides.txt")]
        try:  # from the package cache alone when it has everything (no index round trips)
            _run([*install, "--offline"], log)
        except BuildError:
            _run(install, log)
        progress(f"3/{steps} installing the kernel")
        _install_kernel(target, name)
        progress(f"4/{steps} recording what is inside")
        frozen = _run([uv, "pip", "freeze", "--python", env_python], log)
        contents = [line for line in frozen.splitlines() if "==" in line]
        _run([env_python, "-c", "import ipykernel, lakehub"], log)
        if spark:
            progress(f"5/{steps} class-data archives for Spark's JVMs")
            try:
                _run([env_python, "-m", "lakehub.compute.spark_cds"], log)
            except BuildError:  # slower JVM starts, nothing else
                progress(f"5/{steps} no class-data archives for Spark's JVMs (see the log)")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        os.umask(old_umask)
    _write_new(target / DONE, json.dumps(contents))  # a finished build, which others may reuse
    _point(envs_dir, name, target)
    return build_id, contents


DONE = ".lakehub-build.json"  # in a finished build: its contents


def reuse(
    envs_dir: Path, name: str, python: str, packages: tuple[str, ...]
) -> tuple[str, list[str]] | None:
    """A finished build of exactly this spec (and SDK), made it current; None if there is none."""
    build_id = spec_hash(python, packages)
    target = envs_dir / f"{name}-{build_id}"
    try:
        contents = json.loads((target / DONE).read_text())
    except (OSError, ValueError):
        return None
    _point(envs_dir, name, target)
    return build_id, contents


def _point(envs_dir: Path, name: str, target: Path) -> None:
    """Make ``envs/<name>`` point at ``target``, atomically."""
    tmp = envs_dir / f".{name}.link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, envs_dir / name)


def _write_new(path: Path, text: str) -> None:
    """Write a file of its own: uv hard-links installed files to its cache, so writing through an
    existing name would change that file in the cache and in every environment."""
    path.unlink(missing_ok=True)
    path.write_text(text)


def _install_kernel(target: Path, name: str) -> None:
    site = next((target / "lib").glob("python3*/site-packages"))
    _write_new(site / "usercustomize.py", USERCUSTOMIZE)
    kernel_dir = target / "share" / "jupyter" / "kernels" / "python3"
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        # the launcher gives the kernel the server's memory limit as an rlimit (MemoryError)
        "argv": [
            str(target / "bin" / "python"),
            "-m",
            "lakehub.singleuser.kernel",
            "-f",
            "{connection_file}",
        ],
        "display_name": f"Python 3 ({name})",
        "language": "python",
        "metadata": {"debugger": True},
    }
    _write_new(kernel_dir / "kernel.json", json.dumps(spec, indent=1))


def held_elsewhere(envs_dir: Path, name: str) -> bool:
    """Whether another hub sharing ``envs_dir`` is building ``name`` right now (its lock is
    held): a hub then builds another queued environment first, so hubs split the work."""
    try:
        with open(envs_dir / f".{name}.lock", "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


@contextlib.contextmanager
def building(
    envs_dir: Path, name: str, cancelled: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Held while one hub checks for and makes a build of ``name``: hubs sharing ``envs_dir``
    then build a spec once, and the others reuse it, instead of racing to build it twice."""
    with open(envs_dir / f".{name}.lock", "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancelled():
                    raise RuntimeError("stopped while another hub was building it") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_old_builds(envs_dir: Path, name: str, keep: int = 2) -> None:
    """Delete all but the ``keep`` newest builds of ``name`` (running servers may still use the
    previous one); never the current one."""
    current = (envs_dir / name).resolve()
    builds = sorted(
        (
            p
            for p in envs_dir.glob(f"{name}-*")
            if not p.is_symlink() and BUILD_ID.fullmatch(p.name[len(name) + 1 :])
        ),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[keep:]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
