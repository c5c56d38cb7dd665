"""The ``lakehub`` command line: one module per command group, sharing only `_common`.

Rules: errors are one line on stderr and a non-zero exit. Imports go one way: `_root` imports the
groups (``compute``, ``connection``, ``env``, ``lake``, ``notebook``, ``stream``), the groups
import `_common`, and nothing outside this package imports it (see ``[tool.importlinter]`` in
pyproject.toml; ``./dev check`` enforces both).
"""

from lakehub.cli._root import main

__all__ = ["main"]
