"""The publishing area's contract: what renders a notebook into a page.

A :class:`Renderer` turns a notebook file into a safe HTML fragment (no script of the notebook's
runs where it is shown; outputs cut or left out beyond the page's limits, with notices) and says
what it did. It runs outside any request, with a time limit, and raises :class:`PublishError`
with a message for the publisher when the notebook cannot be rendered. ``ProcessRenderer``
(``render``) runs nbconvert and nh3 in a process of its own, under a memory limit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


class PublishError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Rendered:
    cells: int
    bytes: int  # of the fragment
    cut: int  # outputs cut at the text limit
    left_out: int  # outputs and images not shown (the page's limits)
    interactive: int  # interactive outputs shown as their plain fallback


class Renderer(ABC):
    @abstractmethod
    def render(self, src: Path, dest: Path) -> Rendered:
        """The notebook at ``src`` as a fragment written to ``dest``."""
