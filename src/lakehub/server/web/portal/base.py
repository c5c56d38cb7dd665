"""What every portal page shares: the templates, a page's answer, the redirect back with a
message, the lake's refusals as sentences, and the S3 client with the person's own keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from lakehub.server.lake import browse as browse_area
from lakehub.server.lake.base import s3_client
from lakehub.server.web.auth import Principal

_templates: Jinja2Templates | None = None


def templates() -> Jinja2Templates:
    global _templates
    if _templates is None:
        web = Path(__file__).parent.parent
        _templates = Jinja2Templates(directory=[web / "templates", web / "look"])
        _templates.env.filters["size"] = human_size
        _templates.env.filters["ms"] = ms_time
        _templates.env.filters["num"] = number
    return _templates


def human_size(n: int | None) -> str:
    """Bytes as a person reads them: 950 B, 1.5 KiB, 3.0 GiB (exact bytes go in a title)."""
    if n is None:
        return ""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"


def number(value: Any) -> str:
    """A metric's value in a table: six significant digits; NaN and infinities as words."""
    return f"{value:.6g}" if isinstance(value, (int, float)) else str(value)


def ms_time(ms: int | None) -> str:
    """Milliseconds since the epoch (MLflow's times) as a person reads them, in UTC."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    state = request.app.state.lh
    resp = templates().TemplateResponse(
        request, template, {"prefix": state.prefix, **ctx}, status_code=status
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


TITLES = {
    400: "Not understood",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    405: "Not here",
    409: "Already there",
    413: "Too large",
    422: "Not understood",
    429: "Too many requests",
}


def wants_page(request: Request) -> bool:
    """A browser asking for a portal page (not the JSON API, nor a script): errors are pages."""
    prefix = request.app.state.lh.prefix
    path = request.url.path
    return (
        "text/html" in request.headers.get("accept", "")
        and path.startswith(prefix)
        and not path.startswith((prefix + "api/", prefix + "openapi.json", prefix + "metrics"))
    )


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page in LakeHub's look, with its status, what went wrong and a way home."""
    title = TITLES.get(status, "Something went wrong" if status >= 500 else "Not possible")
    return page(request, "error.html", who=None, title=title, error=message, status=status)


def back(state: Any, path: str, msg: str = "", error: str = "") -> RedirectResponse:
    query = urlencode({k: v for k, v in (("msg", msg), ("error", error)) if v})
    joiner = "&" if "?" in path else "?"
    return RedirectResponse(state.prefix + path + (joiner + query if query else ""), 303)


async def browse_page(
    request: Request, state: Any, s3: Any, bucket: str, prefix: str, key: str, **ctx: Any
) -> HTMLResponse:
    """A bucket's listing under ``prefix``, or with ``key`` one object's page (its facts, a
    preview, a download link), read with ``s3`` (the lake's or a connection's client); ``ctx``:
    what the page adds. The client's errors go to the caller."""
    if key:
        meta = await state.run(browse_area.head, s3, bucket, key)
        shown = await state.run(browse_area.preview, s3, bucket, key, meta["size"])
        url = browse_area.download_url(s3, bucket, key)
        return page(
            request,
            "object.html",
            bucket=bucket,
            key=key,
            meta=meta,
            preview=shown,
            download=url,
            **ctx,
        )
    listing = await state.run(browse_area.listing, s3, bucket, prefix)
    return page(request, "browse.html", buckets=None, listing=listing, **ctx)


async def user_s3(state: Any, who: Principal) -> Any:
    creds = await state.run(state.directory.credentials, who.name)
    return s3_client(creds.endpoint_url, creds.access_key_id, creds.secret_access_key)


def lake_error(err: Exception) -> tuple[int, str]:
    """The lake's refusal as an HTTP status and a sentence."""
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    denied, missing = (403, "You may not read this."), (404, "No such object.")
    reasons = {
        "AccessDenied": denied,
        "403": denied,
        "NoSuchKey": missing,
        "404": missing,
        "NoSuchBucket": (404, "No such bucket."),
    }
    return reasons.get(code, (502, str(err)))
