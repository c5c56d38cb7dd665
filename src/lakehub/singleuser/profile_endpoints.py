"""Let LakeHub's named AWS profiles keep their own endpoint when ``AWS_ENDPOINT_URL`` is set.

Notebook servers carry the lake's endpoint in ``AWS_ENDPOINT_URL``: pyarrow (and so
``pandas.read_parquet("s3://...")``) reads the endpoint from there and nowhere else. botocore,
following the AWS rules, lets that variable override the ``endpoint_url`` of *every* profile, so
``boto3.Session(profile_name="archive")`` would send the archive's keys to the lake.

This module is imported at interpreter start by ``lakehub-profiles.pth`` (installed with the
package). It only registers an import hook; when botocore's ``configprovider`` is imported, the
endpoint lookup is changed for profiles that carry a ``lakehub_connection`` key, the ones
LakeHub writes (:mod:`lakehub.server.notebooks.aws_profiles`): their own ``endpoint_url`` comes
first. Every other profile, and ``[default]``, resolve exactly as botocore decides. If botocore ever
changes shape, nothing is patched and the standard rules apply.
"""

from __future__ import annotations

import sys

# only what every interpreter has loaded already: this runs at the start of every Python
# process of every environment (``typing`` and ``importlib.abc`` cost about 25 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

MARKER = "lakehub_connection"
TARGET = "botocore.configprovider"


def patch(module: ModuleType) -> bool:
    """Make marked profiles' ``endpoint_url`` win; True if botocore looked as expected."""
    cls = getattr(module, "ConfiguredEndpointProvider", None)
    original = getattr(cls, "provide", None)
    if cls is None or original is None or getattr(original, "_lakehub", False):
        return False

    def provide(self: Any) -> Any:
        scoped = getattr(self, "_scoped_config", None)
        if isinstance(scoped, dict) and scoped.get(MARKER) and scoped.get("endpoint_url"):
            return scoped["endpoint_url"]
        return original(self)

    provide._lakehub = True  # type: ignore[attr-defined]
    cls.provide = provide
    return True


class _Finder:
    """A meta path finder (duck-typed: ``importlib.abc`` is not imported for it)."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != TARGET:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        run = getattr(loader, "exec_module", None)
        if spec is None or run is None:
            return spec

        def exec_module(module: ModuleType) -> None:
            import contextlib

            run(module)
            with contextlib.suppress(Exception):  # never break botocore's import
                patch(module)

        loader.exec_module = exec_module  # type: ignore[union-attr]
        return spec


def install() -> None:
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()
