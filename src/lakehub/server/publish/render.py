"""A notebook rendered to a safe HTML fragment, in a process of its own (never in a request):
``python -m lakehub.server.publish.render SRC DEST`` writes DEST and prints what it did as JSON.

Safe: no script of the notebook's can run where the fragment is shown. Interactive outputs
(JavaScript, widgets) are replaced by their plain fallback and a notice; every other output and
every markdown cell go through nbconvert (its ``basic`` template: cells without a page around
them), then the whole fragment through nh3 with an allow-list (no ``script``, ``style``,
``iframe``, ``svg`` element, event attribute nor ``javascript:``/``data:`` link; images may be
``data:image/...``: an SVG in an ``img`` runs nothing). The page that shows the fragment adds a
``Content-Security-Policy: sandbox`` of its own: two walls, either enough.

Large: each text output is cut at :data:`TEXT_MAX`, an image above :data:`IMAGE_MAX` is left
out, and once the outputs shown reach :data:`PAGE_MAX` the rest are left out, each with a notice
where it was. The notebook's JSON is read without nbformat's schema validation (minutes for a
100 MB notebook); what nbconvert cannot read fails the render with its message.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from lakehub.server.publish.base import PublishError, Rendered, Renderer

TEXT_MAX = 256 * 1024  # characters of one text output
IMAGE_MAX = 4 * 2**20  # bytes of one image as stored (base64)
PAGE_MAX = 24 * 2**20  # bytes of outputs shown in all
MEMORY_MAX = 3 * 2**30  # the render process's address space
INTERACTIVE = (
    "application/javascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
    "application/vnd.bokehjs_exec.v0+json",
    "application/vnd.plotly.v1+json",
)
IMAGES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
TAGS = {"div", "span", "pre", "code", "img", "table", "thead", "tbody", "tr", "th", "td"}
ATTRIBUTES = {
    "*": {"class", "id", "style", "title", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _notice(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stderr", "text": f"[LakeHub: {text}]\n"}


class Budget:
    """What the page shows of the outputs, as it goes: cut, left out, and why."""

    def __init__(self) -> None:
        self.used = 0
        self.cut = 0
        self.left_out = 0
        self.interactive = 0

    def text(self, value: Any) -> str:
        text = _text(value)
        if len(text) > TEXT_MAX:
            self.cut += 1
            more = len(text) - TEXT_MAX
            text = text[:TEXT_MAX] + f"\n[LakeHub: {more:,} more characters not shown]\n"
        return text

    def output(self, out: dict[str, Any]) -> list[dict[str, Any]]:
        """``out`` as the page shows it: itself, cut, or replaced by a notice (or two)."""
        if self.used >= PAGE_MAX:
            self.left_out += 1
            return [_notice("output not shown: the page reached its size limit")]
        shown: list[dict[str, Any]] = []
        if out.get("output_type") == "stream":
            out["text"] = self.text(out.get("text", ""))
        elif out.get("output_type") == "error":
            out["traceback"] = [self.text(line) for line in out.get("traceback", [])[:200]]
        elif isinstance(out.get("data"), dict):
            data: dict[str, Any] = out["data"]
            dropped = [m for m in data if m in INTERACTIVE]
            for mime in dropped:
                del data[mime]
            if dropped:
                self.interactive += 1
                shown.append(_notice("an interactive output is not run in a published page"))
            for mime in list(data):
                if mime in IMAGES and len(_text(data[mime])) > IMAGE_MAX:
                    del data[mime]
                    self.left_out += 1
                    shown.append(_notice(f"an image ({mime}) above the page's limit not shown"))
                elif mime not in IMAGES and isinstance(data[mime], str | list):
                    data[mime] = self.text(data[mime])
            if not data:
                return shown
        self.used += len(json.dumps(out))
        return [out, *shown]


def prepare(nb: dict[str, Any]) -> Budget:
    """Cut, leave out and replace what the page will not show, in place."""
    budget = Budget()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            outputs = cell.get("outputs", [])
            cell["outputs"] = [o for out in outputs for o in budget.output(out)]
        for name, bundle in list(cell.get("attachments", {}).items()):
            if any(len(_text(v)) > IMAGE_MAX for v in bundle.values()):
                del cell["attachments"][name]
                budget.left_out += 1
    nb.get("metadata", {}).pop("widgets", None)
    return budget


def _link(tag: str, attr: str, value: str) -> str | None:
    """Links of the web only; images may be inline data."""
    if value.lower().startswith("data:"):
        return value if (tag, attr) == ("img", "src") and value[5:11] == "image/" else None
    return value


def sanitize(fragment: str) -> str:
    import nh3

    return str(
        nh3.clean(
            fragment,
            tags=nh3.ALLOWED_TAGS | TAGS,
            attributes=ATTRIBUTES,
            url_schemes={"http", "https", "mailto", "data"},
            attribute_filter=_link,
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )
    )


def render(src: Path, dest: Path) -> dict[str, Any]:
    import nbformat
    from nbconvert import HTMLExporter
    from nbformat.reader import get_version

    raw = json.loads(src.read_bytes().decode("utf-8-sig"))
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise ValueError("this is not a notebook (no cells)")
    budget = prepare(raw)
    major, minor = get_version(raw)
    if major not in nbformat.versions:
        raise ValueError(f"notebook format {major} is not one nbconvert reads")
    nb = nbformat.versions[major].to_notebook_json(raw, minor=minor)  # not validated: see above
    if major < 4:
        nb = nbformat.convert(nb, 4)
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    safe = sanitize(body)
    dest.write_text(safe, encoding="utf-8")
    return {
        "cells": len(nb.cells),
        "bytes": len(safe.encode()),
        "cut": budget.cut,
        "left_out": budget.left_out,
        "interactive": budget.interactive,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m lakehub.server.publish.render SRC DEST", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_MAX, MEMORY_MAX))
    try:
        done = render(Path(argv[0]), Path(argv[1]))
    except MemoryError:
        print("the notebook needs more memory to render than a page may take", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 (the parent shows the message to the publisher)
        print(f"{type(err).__name__}: {err}"[:500], file=sys.stderr)
        return 1
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class ProcessRenderer(Renderer):
    """This module, run as a process of its own with a time limit (the control plane's
    interpreter: nbconvert and nh3 come with the hub)."""

    def __init__(self, timeout: float = 300.0) -> None:
        self.timeout = timeout

    def render(self, src: Path, dest: Path) -> Rendered:
        argv = [sys.executable, "-m", "lakehub.server.publish.render", str(src), str(dest)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise PublishError(f"rendering took more than {self.timeout:.0f} s") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise PublishError(f"the notebook could not be rendered: {lines[-1] if lines else '?'}")
        return Rendered(**json.loads(done.stdout))
