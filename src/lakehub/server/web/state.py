"""What the web layer's handlers share: the platform (``request.app.state.lh``), under the name
the handlers know it by. See :mod:`lakehub.server.platform`."""

from __future__ import annotations

from lakehub.server.platform import Platform as AppState

__all__ = ["AppState"]
