"""Names per owner: two people may each have a dataset, stream or source called ``sensors``.

A reference is ``owner/name`` or a bare ``name``: the viewer's own of that name, else the only
one they can see. Several visible and none their own is a question back (which one?), never a
guess; what the viewer cannot see is never named, so no answer tells of another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from lakehub.server.identity.users import UserError

Row = TypeVar("Row")
# addresses end with these words (/api/datasets/ann/preview is the preview of the dataset "ann"),
# so nothing may be called by one of them
ROUTE_WORDS = frozenset({"preview", "refresh", "edit", "delete"})


def check_free(name: str, what: str) -> None:
    if name in ROUTE_WORDS:
        raise UserError(f"{what} name {name!r} is reserved: it is a word in LakeHub's addresses")


def split(ref: str) -> tuple[str | None, str]:
    """``owner/name`` -> (owner, name); ``name`` -> (None, name)."""
    owner, _, name = ref.strip().rpartition("/")
    return owner or None, name


def ref(owner: str | None, name: str) -> str:
    return f"{owner}/{name}" if owner else name


def pick(visible: Sequence[tuple[Row, str | None]], reference: str, viewer: str, what: str) -> Row:
    """The one of ``visible`` (rows named as ``reference``'s name, with their owners' names,
    already limited to what ``viewer`` may see) that ``reference`` means."""
    owner, name = split(reference)
    found: list[tuple[Row, str | None]] = [(r, o) for r, o in visible if o == (owner or viewer)]
    if not found and owner is None:
        found = list(visible)
    if not found:
        raise UserError(f"no {what} {reference!r}", 404)
    if len(found) > 1:
        refs = ", ".join(sorted(ref(o, name) for _, o in found))
        raise UserError(
            f"{len(found)} {what}s called {name!r} are visible to you ({refs}): "
            f"say which, as owner/{name}"
        )
    return found[0][0]
