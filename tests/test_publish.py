"""Published notebooks (in-process layer, real renders): a notebook published through the SDK,
the API and the CLI, rendered outside the request by nbconvert and nh3 in a process of its own;
versions, views, a new link, expiry and unpublishing; who may open a page of each audience (its
owner, a space's reader, another user, nobody logged in); the pages' limits; XSS payloads that
stay inert in Chromium; bad input. (A job run's output: in test_jobs.)"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from inproc import InProc

API = "/services/lakehub/api/published"
PORTAL = "/services/lakehub/"


def notebook(*cells: dict[str, Any]) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "cells": [{"id": f"c{i}", "metadata": {}, **c} for i, c in enumerate(cells)],
    }


def md(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "source": text}


def code(source: str, *outputs: dict[str, Any]) -> dict[str, Any]:
    return {"cell_type": "code", "source": source, "outputs": list(outputs), "execution_count": 1}


def shown(data: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": {}}


REPORT = notebook(
    md("# Weekly sales\n\nRevenue **rose** by 4%."),
    code(
        "df",
        shown(
            {
                "text/html": '<table class="dataframe"><tr><th>region</th><th>sales</th></tr>'
                "<tr><td>north</td><td>1234</td></tr></table>",
                "text/plain": "region sales",
            }
        ),
    ),
)


def write(tmp: Path, nb: dict[str, Any], name: str = "weekly.ipynb") -> Path:
    path = tmp / name
    path.write_text(json.dumps(nb))
    return path


def rendered(c: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    """The publication once its newest version has been rendered (or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = c.get(f"{API}/{name}").json()
        if found["versions"][0]["state"] != "rendering" or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def page(c: Any, url: str, **kw: Any) -> Any:
    return c.get(PORTAL + url, headers={"accept": "text/html"}, **kw)


def test_published_versions_views_link_expiry_and_unpublish(
    inproc: InProc, inproc_user: Any, tmp_path: Path
) -> None:
    import lakehub.publish as publish
    from lakehub.client import LakeHubError, connect

    ann, bob = inproc_user(), inproc_user()
    client = connect(inproc.url, inproc.token(ann))
    p = publish.notebook(write(tmp_path, REPORT), title="Sales, week 49", client=client)
    assert p["name"] == "weekly" and p["audience"] == "hub" and p["expires_at"] is None
    assert p["versions"][0]["state"] == "ready", p
    assert p["link"] == f"{inproc.url}{PORTAL}{p['url']}" and len(p["url"]) == len("pub/") + 32
    b = inproc.http(bob)
    r = page(b, p["url"])
    assert r.status_code == 200, r.text
    assert "Sales, week 49" in r.text and "<td>north</td><td>1234</td>" in r.text
    assert "<strong>rose</strong>" in r.text and f"by {ann}" in r.text
    assert r.headers["content-security-policy"].startswith("sandbox;")
    assert r.headers["referrer-policy"] == "no-referrer"
    # the owner's own openings are not counted; another user's are
    assert page(inproc.http(ann), p["url"]).status_code == 200
    assert publish.get("weekly", client=client)["views"] == 1
    # published again: version 2 at the same link; version 1 still there
    again = notebook(md("# Weekly sales\n\nRevenue fell by 2%."))
    p2 = publish.notebook(write(tmp_path, again), client=client)
    assert [v["version"] for v in p2["versions"]] == [2, 1] and p2["url"] == p["url"]
    assert "fell by 2%" in page(b, p["url"]).text
    old = page(b, p["url"] + "/v/1")
    assert "rose" in old.text and "versions" in old.text
    assert page(b, p["url"] + "/v/9").status_code == 404
    # the snapshot, as published, to its owner
    snap = inproc.http(ann).get(f"{API}/weekly/versions/1/notebook.ipynb")
    assert snap.status_code == 200 and json.loads(snap.content)["cells"][0]["source"].startswith(
        "# Weekly"
    )
    # a new link: the old one no longer opens it
    moved = publish.new_link("weekly", client=client)
    assert moved["url"] != p["url"]
    assert page(b, p["url"]).status_code == 404
    assert page(b, moved["url"]).status_code == 200
    # expiry: in the past refused; tomorrow fine; once passed, the page is turned away
    with pytest.raises(LakeHubError, match="future"):
        publish.update("weekly", expires="2020-01-01", client=client)
    assert publish.update("weekly", expires="2099-01-31", client=client)["expired"] is False
    from sqlalchemy import update

    from lakehub.server.publish.tables import Publication

    with inproc.platform.db.session() as s:  # the clock moves past the expiry
        s.execute(update(Publication).where(Publication.owner == ann).values(expires_ms=1))
    gone = page(b, moved["url"])
    assert gone.status_code == 410 and "expired" in gone.text
    assert publish.update("weekly", expires=None, client=client)["expires_at"] is None
    assert page(b, moved["url"]).status_code == 200
    # a page whose bytes changed in the lake is not shown
    creds = inproc.platform.directory.credentials(ann)
    from conftest import s3_for

    s3 = s3_for(
        {
            "endpoint_url": creds.endpoint_url,
            "access_key_id": creds.access_key_id,
            "secret_access_key": creds.secret_access_key,
        }
    )
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=f"{ann}-home", Prefix="published/")["Contents"]
    ]
    pages = sorted(k for k in keys if k.endswith("/2/page.html"))
    s3.put_object(Bucket=f"{ann}-home", Key=pages[0], Body=b"<p>changed</p>")
    tampered = page(b, moved["url"])
    assert tampered.status_code == 410 and "changed" in tampered.text
    # unpublished: the page and every file go
    publish.remove("weekly", client=client)
    assert page(b, moved["url"]).status_code == 404
    left = s3.list_objects_v2(Bucket=f"{ann}-home", Prefix="published/")
    assert left.get("KeyCount", 0) == 0


def test_who_may_open_each_audience(inproc: InProc, inproc_user: Any) -> None:
    ann, member, other = inproc_user(), inproc_user(), inproc_user()
    a = inproc.http(ann)
    space = f"pub{ann[-4:]}"
    assert a.post("/services/lakehub/api/spaces", json={"name": space}).status_code == 201
    r = a.put(
        f"/services/lakehub/api/spaces/{space}/grants", json={"user": member, "access": "read"}
    )
    assert r.status_code == 200, r.text
    links = {}
    for audience in ("private", "space", "hub", "public"):
        params = {"audience": audience, **({"space": space} if audience == "space" else {})}
        r = a.put(f"{API}/{audience}", content=json.dumps(REPORT), params=params)
        assert r.status_code == 201, r.text
        links[audience] = r.json()["url"]
    for audience in links:
        rendered(a, audience)
    anonymous = inproc.http()
    expected = {  # audience: (owner, the space's reader, another user, nobody logged in)
        "private": (200, 404, 404, "login"),
        "space": (200, 200, 404, "login"),
        "hub": (200, 200, 200, "login"),
        "public": (200, 200, 200, 200),
    }
    for audience, want in expected.items():
        got = []
        for c in (a, inproc.http(member), inproc.http(other), anonymous):
            r = page(c, links[audience], follow_redirects=False)
            got.append("login" if r.is_redirect else r.status_code)
        assert tuple(got) == want, (audience, got)
    # what others see listed: what is published for them, never a private or public one
    listed = inproc.http(member).get(API, params={"shared": True}).json()
    assert sorted(p["name"] for p in listed if p["owner"] == ann) == ["hub", "space"]
    assert not [
        p
        for p in inproc.http(other).get(API, params={"shared": True}).json()
        if p["owner"] == ann and p["name"] == "space"
    ]
    # a stranger cannot read, change, move or remove another's publication
    o = inproc.http(other)
    tries = [
        ("GET", "/hub"),
        ("PATCH", "/hub"),
        ("POST", "/hub/link"),
        ("DELETE", "/hub"),
        ("GET", "/hub/versions/1/notebook.ipynb"),
    ]
    for method, path in tries:
        r = o.request(method, API + path, json={} if method == "PATCH" else None)
        assert r.status_code == 404 and "does not exist" in r.text, (method, path, r.text)
    # the space's grant revoked: its page closes at once
    r = a.delete(f"/services/lakehub/api/spaces/{space}/grants", params={"user": member})
    assert r.status_code == 204, r.text
    assert page(inproc.http(member), links["space"]).status_code == 404


@pytest.mark.parametrize(
    ("name", "body", "params", "status", "message"),
    [
        ("Bad_Name", REPORT, {}, 400, "bad name"),
        ("plain", "hello", {}, 400, "not a notebook"),
        ("nospace", REPORT, {"audience": "space"}, 400, "not in a space"),
        ("elsewhere", REPORT, {"audience": "space", "space": "nosuchspace"}, 400, "not in a space"),
        ("spaced", REPORT, {"audience": "hub", "space": "x"}, 400, "only with the audience"),
        ("late", REPORT, {"expires_at": "2001-01-01T00:00:00Z"}, 400, "future"),
        ("who", REPORT, {"audience": "everyone"}, 422, "audience"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    inproc: InProc,
    inproc_user: Any,
    name: str,
    body: Any,
    params: dict[str, str],
    status: int,
    message: str,
) -> None:
    c = inproc.http(inproc_user())
    content = body if isinstance(body, str) else json.dumps(body)
    r = c.put(f"{API}/{name}", content=content, params=params)
    assert r.status_code == status and message in r.text, r.text
    assert c.get(API).json() == []  # nothing half-made


def test_sources_that_are_not_yours_and_notebooks_that_do_not_render(
    inproc: InProc, inproc_user: Any
) -> None:
    import lakehub.publish as publish
    from lakehub.client import LakeHubError, connect

    ann, eve = inproc_user(), inproc_user()
    e = inproc.http(eve)
    r = e.post(API, json={"name": "theirs", "lake": f"s3://{ann}-home/x.ipynb"})
    assert r.status_code == 404 and "you may read" in r.text
    r = e.post(API, json={"name": "theirs", "job": "report", "run": 1})
    assert r.status_code == 404 and "does not exist" in r.text
    r = e.post(API, json={"name": "nothing"})
    assert r.status_code == 400 and "publish what" in r.text
    # JSON, but no notebook: the render fails, and says why
    client = connect(inproc.url, inproc.token(eve))
    broken = Path(f"/tmp/lakehub-broken-{eve}.ipynb")
    broken.write_text('{"cells": [{"cell_type": "code"}], "nbformat": 4, "nbformat_minor": 5}')
    try:
        with pytest.raises(LakeHubError, match="could not be rendered"):
            publish.notebook(broken, client=client)
    finally:
        broken.unlink()
    failed = publish.get(broken.stem.lower(), client=client)["versions"][0]
    assert failed["state"] == "failed" and "could not be rendered" in failed["message"]


def test_the_page_s_limits_cut_and_leave_out_with_notices() -> None:
    from lakehub.server.publish import render

    big_text = "x" * (render.TEXT_MAX + 10)
    big_image = "A" * (render.IMAGE_MAX + 4)
    nb = notebook(
        code("print", {"output_type": "stream", "name": "stdout", "text": big_text}),
        code("img", shown({"image/png": big_image, "text/plain": "<Figure>"})),
        code(
            "w",
            shown(
                {
                    "application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                    "text/plain": "IntSlider(value=3)",
                }
            ),
        ),
        *[code("many", shown({"text/plain": "y" * 200_000})) for _ in range(150)],  # 30 MB
    )
    budget = render.prepare(nb)
    out = nb["cells"][0]["outputs"][0]["text"]
    assert len(out) < render.TEXT_MAX + 100 and "10 more characters not shown" in out
    assert budget.cut == 1 and budget.interactive == 1
    assert budget.left_out >= 1 + 150 - render.PAGE_MAX // 200_000  # the image, the rest
    notices = [
        o["text"] for cell in nb["cells"] for o in cell["outputs"] if o.get("name") == "stderr"
    ]
    assert any("image (image/png) above the page's limit" in n for n in notices)
    assert any("interactive output" in n for n in notices)
    assert any("page reached its size limit" in n for n in notices)
    assert nb["cells"][2]["outputs"][0]["data"] == {"text/plain": "IntSlider(value=3)"}


SVG = "<svg xmlns='http://www.w3.org/2000/svg' onload=\"fetch('HIT/svgout')\"><circle r='4'/></svg>"
PAYLOADS = notebook(
    md(
        "<script>fetch('HIT/md')</script><img src=x onerror=\"fetch('HIT/img')\">"
        "<a id='jslink' href=\"javascript:fetch('HIT/href')\">click</a>"
        "<svg onload=\"fetch('HIT/svg')\"></svg>"
        "<iframe srcdoc=\"<script>fetch('HIT/frame')</script>\"></iframe>"
        "<form action='HIT/form'><button id='send'>send</button></form>"
        "<style>body { background: url('HIT/css') }</style>"
    ),
    code(
        "x",
        shown({"text/html": "<b>bold</b><script>fetch('HIT/html')</script><img src='HIT/remote'>"}),
        shown({"application/javascript": "fetch('HIT/js')", "text/plain": "<js>"}),
        shown({"image/svg+xml": SVG}),
        shown({"application/vnd.jupyter.widget-view+json": {"model_id": "w"}, "text/plain": "W"}),
    ),
)


@pytest.fixture
def hits() -> Iterator[tuple[str, list[str]]]:
    """A receiver on 127.0.0.1 that records every request a payload would make."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", seen
    finally:
        server.shutdown()


@pytest.mark.browser
def test_xss_payloads_stay_inert_in_chromium(
    inproc: InProc, inproc_user: Any, browser: Any, hits: tuple[str, list[str]], artifacts: Path
) -> None:
    from lakehub.server.web.auth import TOKEN_COOKIE

    base, seen = hits
    ann, bob = inproc_user(), inproc_user()
    nb = json.loads(json.dumps(PAYLOADS).replace("HIT/", base))
    r = inproc.http(ann).put(f"{API}/xss", content=json.dumps(nb))
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    rendered(inproc.http(ann), "xss")
    body = page(inproc.http(bob), url).text
    for bad in ("<script", "onerror", "onload", "javascript:", "<iframe", "<form", "<style>b"):
        assert bad not in body.split('<section class="nb"')[1], bad
    context = browser.new_context()
    context.add_cookies(
        [
            {
                "name": TOKEN_COOKIE,
                "url": inproc.url + PORTAL,
                "value": inproc.platform.vault.encrypt(inproc.token(bob)),
            }
        ]
    )
    tab = context.new_page()
    try:
        tab.goto(inproc.url + PORTAL + url)
        tab.wait_for_selector("#notebook")
        assert tab.locator("#notebook b", has_text="bold").count() == 1  # the harmless HTML stays
        if tab.locator("#jslink").count():
            tab.click("#jslink")
        tab.wait_for_timeout(1000)
        shots = artifacts / "browser"
        shots.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(shots / "80-published-xss.png"), full_page=True)
        # the page has no origin of its own: its scripts (none run) could not read a cookie
        try:
            cookie = tab.evaluate("document.cookie")
        except Exception as err:  # noqa: BLE001 (a sandboxed page refuses it: that is the point)
            cookie = f"refused: {err}"
        assert TOKEN_COOKIE not in cookie
    finally:
        context.close()
    assert seen == [], seen


def test_the_cli_publishes_lists_and_unpublishes(
    inproc: InProc, inproc_user: Any, tmp_path: Path
) -> None:
    ann = inproc_user()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "lakehub.cli", "publish"]
    auth = ["--hub", inproc.url, "--token", inproc.token(ann)]
    nb = write(tmp_path, REPORT, "Q3 Report.ipynb")
    out = subprocess.run(
        [*cli, str(nb), "--to", "public", *auth],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("q3-report: v1 ready, for public, 0 views")
    link = out.stdout.strip().splitlines()[-1]
    assert "1234" in httpx.get(link).text  # anyone with the link
    listed = subprocess.run([*cli, "ls", *auth], capture_output=True, text=True, env=env)
    assert "q3-report" in listed.stdout and link in listed.stdout
    bad = subprocess.run(
        [*cli, str(nb), "--to", "friends", *auth], capture_output=True, text=True, env=env
    )
    assert bad.returncode != 0 and "--to is" in bad.stderr and "Traceback" not in bad.stderr
    gone = subprocess.run([*cli, "rm", "nosuch", *auth], capture_output=True, text=True, env=env)
    assert gone.returncode != 0 and "does not exist" in gone.stderr
    assert "Traceback" not in gone.stderr
    done = subprocess.run([*cli, "rm", "q3-report", *auth], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and httpx.get(link).status_code == 404


def test_the_portal_page_publishes_lists_and_keeps_a_refused_form(
    inproc: InProc, inproc_user: Any
) -> None:
    ann = inproc_user()
    c = inproc.browser_login(ann)
    r = c.post(
        PORTAL + "published",
        data={
            "name": "Bad Name",
            "lake": "s3://nowhere/x.ipynb",
            "title": "My title",
            "audience": "public",
        },
    )
    assert r.status_code == 400 and "bad name" in r.text
    assert 'value="My title"' in r.text and 'value="s3://nowhere/x.ipynb"' in r.text
    assert '<option value="public" selected>' in r.text
    files = {"notebook": ("weekly.ipynb", json.dumps(REPORT), "application/x-ipynb+json")}
    r = c.post(PORTAL + "published", data={"name": "weekly", "title": "Week 49"}, files=files)
    assert r.status_code == 200 and "Publishing weekly, version 1" in r.text, r.text
    rendered(inproc.http(ann), "weekly")
    listed = c.get(PORTAL + "published").text
    assert 'data-pub="weekly"' in listed and "v1 ready" in listed and "Week 49" in listed
    link = inproc.http(ann).get(f"{API}/weekly").json()["url"]
    assert f'href="{PORTAL}{link}"' in listed
    r = c.post(
        PORTAL + "published/weekly/change",
        data={"title": "Week 49", "audience": "space", "space": "nosuch"},
    )
    assert "not in a space" in r.text
    r = c.post(PORTAL + "published-run", data={"job": "nosuch", "run": "1", "name": "x"})
    assert "does not exist" in r.text
    r = c.post(PORTAL + "published/weekly/remove")
    assert "weekly: unpublished" in r.text and 'data-pub="weekly"' not in r.text


def test_a_link_made_in_a_notebook_server_goes_through_the_front_door(
    inproc: InProc, inproc_user: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lakehub.publish as publish
    from lakehub.client import connect

    ann = inproc_user()
    # a notebook server's client talks to the API directly; a browser opens the front door
    monkeypatch.setenv("LAKEHUB_API_URL", inproc.url)
    monkeypatch.setenv("LAKEHUB_FRONT_URL", "http://hub.example.org:8000")
    client = connect(inproc.url, inproc.token(ann))
    spaced = tmp_path / "weekly.ipynb"
    spaced.write_text("\n  " + json.dumps(REPORT, indent=1))  # JSON may start with blanks
    p = publish.notebook(spaced, client=client, wait=0)
    assert p["link"] == f"http://hub.example.org:8000/services/lakehub/{p['url']}"
    monkeypatch.delenv("LAKEHUB_FRONT_URL")
    assert publish.get("weekly", client=client)["link"].startswith(inproc.url)
