"""Build the notebook environments the tests run (the servers' default and the built-in ones)
into the folder given, from the package index, as part of the test install.

The tests reuse these builds (``LAKEHUB_TEST_ENVIRONMENTS``) and build their own environments
from the package cache alone (``UV_OFFLINE``): no test reaches a package index, and a fresh
machine's cache holds what they need. A build of an unchanged spec is reused, so a second run
builds nothing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from lakehub.server.config import Settings
from lakehub.server.notebooks import environments as build
from lakehub.server.notebooks.specs import BUILTIN_ENVIRONMENTS


def say(name: str) -> Callable[[str], None]:
    return lambda step: print(f"building the test environment {name}: {step}", flush=True)


def main(envs: Path) -> None:
    envs.mkdir(parents=True, exist_ok=True)
    envs.chmod(0o755)  # every user account runs these environments
    python = Settings.model_fields["notebook_python"].default
    start = time.monotonic()
    build.ensure_environment(envs, "default", python, say=lambda line: None)
    for spec in BUILTIN_ENVIRONMENTS:
        interpreter = build.interpreter_for(spec.python, python)
        with build.building(envs, spec.name):
            if build.reuse(envs, spec.name, interpreter, spec.packages) is None:
                log, progress = envs / f"{spec.name}.log", say(spec.name)
                try:
                    build.build_named(envs, spec.name, interpreter, spec.packages, log, progress)
                except build.BuildError:
                    sys.exit(f"building {spec.name} failed: see {log}")
            build.remove_old_builds(envs, spec.name)
    took = time.monotonic() - start
    print(f"test environments ready in {envs} ({took:.0f} s)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
