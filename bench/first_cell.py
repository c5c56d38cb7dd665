"""Benchmark: a person's first cell. From clicking "Start" until a notebook cell's output shows,
in Chromium, LakeHub against plain JupyterHub in the same run.

Each run, on each hub, as a person does it: log in on the login page, ask for a server (LakeHub:
the portal's "Start my server", then the spawn form's "Start" with its defaults, the
``datascience`` environment; plain JupyterHub: its home's "Start My Server"), wait for
JupyterLab, open a new notebook from the launcher, type a cell, wait for the kernel to be idle,
run the cell and wait for its output. Timed: from the click on "Start" (LakeHub) or "Start My
Server" (plain) until the output is on screen; also until JupyterLab's launcher shows. The
server is stopped (not timed) before the next run; the hubs take turns, alternating which goes
first, so machine load falls on both alike. Medians and the ratio are printed.

The cell reads a small DataFrame from the user's own bucket on LakeHub (``pd.read_parquet`` of
``s3://<user>-home/...``, written first by the benchmark, not timed) and builds the same
DataFrame in memory on plain JupyterHub (which has no lake): the kernel and JupyterLab are the
same build on both (plain JupyterHub runs LakeHub's server environment and its datascience
kernel, as ``bench/spawn.py`` sets it up).

    .venv/bin/python bench/first_cell.py [--runs 5] [--keep]
"""

from __future__ import annotations

import argparse
import io
import re
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import benchlib as B  # noqa: E402
import spawn as S  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
TIMEOUT_MS = 180_000
ENV = "datascience"


def first_cell(browser: Any, front: str, name: str, password: str, lake: bool) -> dict[str, Any]:
    ctx = browser.new_context(base_url=front, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    try:
        page.goto("/hub/login")
        page.fill("#username_input", name)
        page.fill("#password_input", password)
        with page.expect_navigation():
            page.click("#login_submit")
        if lake:
            page.goto("/services/lakehub/")
            page.get_by_role("link", name="Start my server").click()
            page.locator("#lakehub-spawn-form").wait_for()
            start = page.get_by_role("button", name="Start")
            code = f'import pandas as pd\npd.read_parquet("s3://{name}-home/first-cell.parquet")'
        else:
            page.goto("/hub/home")
            start = page.locator("#start")
            code = 'import pandas as pd\npd.DataFrame({"x": [1, 2]})'
        t0 = time.perf_counter()
        start.click()
        page.wait_for_url(re.compile(rf"/user/{name}/lab"))
        card = page.locator(".jp-LauncherCard[data-category=Notebook]").first
        card.wait_for()
        lab = time.perf_counter() - t0
        card.click()
        page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
        page.keyboard.insert_text(code)
        page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for()
        page.keyboard.press("Shift+Enter")
        page.locator(".jp-OutputArea-output table").first.wait_for()
        return {"ok": True, "lab_seconds": lab, "seconds": time.perf_counter() - t0}
    except Exception as err:  # a failed run is reported, not fatal
        return {"ok": False, "error": str(err).splitlines()[0][:300]}
    finally:
        ctx.close()


def stop(front: str, name: str, token: str) -> None:
    """Stop the server, and forget the notebook and the workspace (JupyterLab would open them
    again next time instead of its launcher): each run starts as the first did."""
    with httpx.Client(base_url=front, headers={"Authorization": f"token {token}"}) as c:
        for notebook in c.get(f"/user/{name}/api/contents", timeout=30).json()["content"]:
            if notebook["name"].endswith(".ipynb"):
                c.delete(f"/user/{name}/api/contents/{notebook['path']}", timeout=30)
        c.delete(f"/user/{name}/lab/api/workspaces/default", timeout=30)
        c.delete(f"/hub/api/users/{name}/server", timeout=60)
        B.wait_until(
            lambda: not c.get(f"/hub/api/users/{name}").json().get("servers"), S.STOP_TIMEOUT, 0.3
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="first cells per hub (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    from playwright.sync_api import sync_playwright

    B.install_sigterm()
    root = B.bench_root("first-cell")
    marker = str(root)
    name = f"cell{secrets.token_hex(3)}"
    lake = S.LakeHub(root)
    plain: S.PlainHub | None = None
    runs: dict[str, list[dict[str, Any]]] = {"LakeHub": [], "plain JupyterHub": []}
    results: dict[str, Any] = {"benchmark": "first_cell", "host": B.host_info(), "runs": runs}
    try:
        print(f"first-cell benchmark: {args.runs} runs per hub, data in {root}", flush=True)
        lake.start()
        lake.wait_environments([ENV], S.ENVIRONMENTS_TIMEOUT)
        env_dir = (lake.data / "envs" / "default").resolve()
        builds = {ENV: str((lake.data / "envs" / ENV).resolve())}
        plain = S.PlainHub(root, marker, env_dir, builds, ENV)
        plain.start()
        lake.add_user(name)
        plain.add_user(name)
        with lake.hub.http(name) as c:
            creds = c.get("/services/lakehub/api/lake/credentials").json()
        _put_frame(creds, name)
        sides = [
            ("LakeHub", lake.front, lake.hub.passwords[name], lake.hub.token(name), True),
            ("plain JupyterHub", plain.front, "any", plain.tokens[name], False),
        ]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                for i in range(args.runs):
                    line = []
                    for label, front, password, token, is_lake in sides[:: 1 if i % 2 else -1]:
                        r = first_cell(browser, front, name, password, is_lake)
                        stop(front, name, token)
                        runs[label].append(r)
                        line.append(f"{label} {B.fmt(r.get('seconds'))} s")
                        if not r["ok"]:
                            print(f"    {label} run {i + 1} failed: {r['error']}", flush=True)
                    print(f"  run {i + 1}/{args.runs}: " + "   ".join(sorted(line)), flush=True)
            finally:
                browser.close()
    finally:
        lake.close()
        if plain is not None:
            plain.close()
        B.reap(marker, wait=15)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'':<18} {'Start to output, p50':>22} {'Start to JupyterLab, p50':>26} {'ok':>5}")
    medians = {}
    for label, rs in runs.items():
        ok = [r for r in rs if r["ok"]]
        cell = statistics.median(r["seconds"] for r in ok) if ok else None
        lab = statistics.median(r["lab_seconds"] for r in ok) if ok else None
        medians[label] = cell
        print(f"{label:<18} {B.fmt(cell):>20} s {B.fmt(lab):>24} s {len(ok):>3}/{len(rs)}")
    a, b = medians["LakeHub"], medians["plain JupyterHub"]
    if a and b:
        print(f"LakeHub / plain JupyterHub (Start to output, medians): {a / b:.2f}x")
    results["medians_seconds"] = medians
    B.write_results("first_cell", results)
    return 0 if all(r["ok"] for rs in runs.values() for r in rs) else 1


def _put_frame(creds: dict[str, Any], name: str) -> None:
    """The small table LakeHub's cell reads, written with the user's own keys (not timed)."""
    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame({"x": [1, 2]}).to_parquet(buf)
    B.s3_for(creds).put_object(Bucket=f"{name}-home", Key="first-cell.parquet", Body=buf.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
