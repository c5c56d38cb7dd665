"""The ``lakehub`` command line: one module per command group, sharing only `_common`.

Rules: errors are one line on stderr and a non-zero exit. Imports go one way: `_root` imports the
groups (``compute``, ``connection``, ``env``, ``lake``, ``notebook``, ``stream``), the groups
import `_common`, and nothing outside this package imports it (see ``[tool.importlinter]`` in
pyproject.toml; ``./dev check`` enforces both).
"""

import sys

# httpx imports its own command line (rich, pygments, click's pager) whenever they are installed,
# a sixth of this command's start; this command never runs it (httpx then offers a stub)
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from lakehub.cli._root import main  # noqa: E402

__all__ = ["main"]
