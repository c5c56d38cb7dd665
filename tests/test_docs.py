"""The documentation tells the truth about its own surface: every setting and every command is in
the reference, and every link between the pages leads to a page that exists. No hub needed."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from lakehub.cli import main
from lakehub.server.config import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE = DOCS / "reference" / "cli-settings.md"
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            out += commands(cmd, (*path, name))
        else:
            out.append((*path, name))
    return out


def test_every_setting_is_in_the_reference() -> None:
    text = REFERENCE.read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in text]
    assert not missing, f"settings not in {REFERENCE.name}: {missing}"


def test_every_command_is_in_the_reference() -> None:
    rows = [ln for ln in REFERENCE.read_text().splitlines() if ln.startswith("| `lakehub ")]
    assert isinstance(main, click.Group)
    missing = []
    for path in commands(main):
        group, leaf = ("lakehub " + " ".join(path[:-1])).strip(), path[-1]
        mine = [r for r in rows if re.search(rf"`{re.escape(group)}\b", r)]
        cells = [r[: r.index("` | ") + 1] for r in mine]  # the command cell (it holds | too)
        if not any(re.search(rf"(`|\| |`lakehub [a-z ]*?){re.escape(leaf)}\b", c) for c in cells):
            missing.append(" ".join(("lakehub", *path)))
    assert not missing, f"commands not in {REFERENCE.name}: {missing}"


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_links_between_pages_lead_somewhere(page: Path) -> None:
    broken = [
        target
        for target, _ in LINK.findall(page.read_text())
        if not target.startswith(("http://", "https://", "mailto:"))
        and not (page.parent / target).exists()
    ]
    assert not broken, f"{page.relative_to(DOCS)} links to missing {broken}"
