"""The SDK's import paths, as a notebook uses them: ``import lakehub`` is enough."""

from __future__ import annotations

import subprocess
import sys


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_every_sdk_area_is_reachable_from_the_package() -> None:
    out = python(
        "import lakehub\n"
        "print(callable(lakehub.compute.dask), callable(lakehub.compute.spark),"
        " callable(lakehub.datasets.get), callable(lakehub.streams.open),"
        " callable(lakehub.arrays.open))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"] * 5


def test_importing_lakehub_loads_no_area_and_no_server_module() -> None:
    out = python(
        "import sys, lakehub\n"
        "print(sorted(m for m in sys.modules if m.startswith('lakehub.')"
        " and not m.startswith('lakehub.singleuser')))"  # the .pth's import hook
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
