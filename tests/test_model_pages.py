"""The portal's experiments and models (in-process layer): the runs table paged, sorted, filtered
and with its columns picked on the server; a run's metrics drawn in Chromium; runs compared; a
model's versions, lineage, alias history and rollback; nothing of another's shown."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inproc import InProc

pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

API = "/services/lakehub/mlflow"
PORTAL = "/services/lakehub/"


@pytest.fixture(scope="module")
def logged(inproc: InProc) -> Iterator[dict[str, Any]]:
    """ann's experiment of 120 runs (metric ``score`` = the run's number, a loss curve of 20
    steps, params ``depth`` and ``lr``), a model with two versions and a moved alias."""

    ann = f"pages{os.getpid() % 1000}{os.urandom(2).hex()}"
    bob = f"other{os.getpid() % 1000}{os.urandom(2).hex()}"
    for name in (ann, bob):
        inproc.quick_user(name)
    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN")}
    os.environ["MLFLOW_TRACKING_URI"] = inproc.url + API
    os.environ["MLFLOW_TRACKING_TOKEN"] = inproc.token(ann)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        client = MlflowClient()
        exp = client.create_experiment("tuning")
        runs = []
        for i in range(120):
            run = client.create_run(exp, run_name=f"trial-{i:03d}")
            metrics = [Metric("score", float(i), 0, 0)]
            if i < 3:
                metrics += [Metric("loss", 1.0 / (s + 1) + i, 0, s) for s in range(20)]
            params = [Param("depth", str(i % 7)), Param("lr", f"0.{i % 3 + 1}")]
            client.log_batch(run.info.run_id, metrics=metrics, params=params)
            runs.append(run.info.run_id)
        client.log_text(runs[0], "hello", "notes/readme.txt")
        client.create_registered_model("ranker")
        for _ in range(2):
            client.create_model_version("ranker", f"runs:/{runs[0]}/notes", runs[0])
        client.set_registered_model_alias("ranker", "champion", "1")
        client.set_registered_model_alias("ranker", "champion", "2")
        yield {"ann": ann, "bob": bob, "exp": exp, "runs": runs}
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def names(html: str) -> list[str]:
    return re.findall(r'<a href="[^"]*runs/[0-9a-f]{32}">(trial-\d+)</a>', html)


def test_the_runs_table_pages_sorts_filters_and_picks_columns(
    inproc: InProc, logged: dict[str, Any]
) -> None:
    c = inproc.browser_login(logged["ann"])
    base = f"{PORTAL}experiments/{logged['exp']}"
    listed = c.get(f"{PORTAL}experiments")
    assert listed.status_code == 200 and ">tuning</a>" in listed.text
    assert "<td>120</td>" in listed.text
    first = c.get(base, params={"sort": "metrics.score", "desc": "true"})
    assert first.status_code == 200
    assert names(first.text)[:3] == ["trial-119", "trial-118", "trial-117"]
    assert len(names(first.text)) == 50 and 'rel="next"' in first.text
    last = c.get(base, params={"sort": "metrics.score", "desc": "false", "page": 3})
    assert names(last.text) == [f"trial-{i:03d}" for i in range(100, 120)]
    assert 'rel="next"' not in last.text
    # the columns are chosen on the server: only what was asked is sent
    picked = c.get(base, params={"cols": "params.lr"})
    assert picked.text.count('class="col"') == 1 and "params.lr" in picked.text
    assert 'class="col"><a' in picked.text and "metrics.score</a></th>" not in picked.text
    found = c.get(base, params={"filter": "metrics.score >= 115 and params.depth = '0'"})
    assert sorted(names(found.text)) == ["trial-119"]  # 119 % 7 == 0
    bad = c.get(base, params={"filter": "metrics.score >>> 1"})
    assert bad.status_code == 200 and "metrics compare with numbers" in bad.text
    assert 'value="metrics.score &gt;&gt;&gt; 1"' in bad.text  # what was typed stays


def test_nothing_of_anothers_is_shown(inproc: InProc, logged: dict[str, Any]) -> None:
    c = inproc.browser_login(logged["bob"])
    assert "tuning" not in c.get(f"{PORTAL}experiments").text
    assert "ranker" not in c.get(f"{PORTAL}models").text
    for path in (
        f"experiments/{logged['exp']}",
        f"runs/{logged['runs'][0]}",
        f"runs/compare?run={logged['runs'][0]}",
        f"models/{logged['ann']}.ranker",
    ):
        got = c.get(PORTAL + path, headers={"accept": "text/html"})
        assert got.status_code == 404, path
        assert "trial-" not in got.text and "LakeHub" in got.text
    refused = c.post(f"{PORTAL}models/{logged['ann']}.ranker/aliases/champion/rollback")
    assert "does not exist" in refused.text


@pytest.mark.browser
def test_a_run_s_charts_runs_compared_and_a_model_s_history_in_chromium(
    inproc: InProc, logged: dict[str, Any], browser: Any, artifacts: Path
) -> None:
    from lakehub.server.web.auth import TOKEN_COOKIE

    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [
            {
                "name": TOKEN_COOKIE,
                "value": inproc.platform.vault.encrypt(inproc.token(logged["ann"])),
                "url": inproc.url + PORTAL,
            }
        ]
    )
    page = context.new_page()
    try:
        page.goto(f"{inproc.url}{PORTAL}experiments/{logged['exp']}?sort=metrics.score&desc=false")
        page.wait_for_selector("#runs tr[data-run]")
        page.screenshot(path=str(shots / "60-runs-table.png"), full_page=True)
        # the link MLflow's client prints for a run lands on the run's page
        page.goto(f"{inproc.url}{API}/#/experiments/{logged['exp']}/runs/{logged['runs'][0]}")
        page.wait_for_url(re.compile(f"runs/{logged['runs'][0]}$"))
        chart = page.wait_for_selector(".chart[data-drawn] canvas")
        assert chart is not None
        assert page.get_attribute('.chart[aria-label="loss over steps"]', "data-drawn") == "20"
        assert page.locator("#artifacts a", has_text="notes/").count() == 1
        page.screenshot(path=str(shots / "61-run-charts.png"), full_page=True)
        runs = "&".join(f"run={r}" for r in logged["runs"][:3])
        page.goto(f"{inproc.url}{PORTAL}runs/compare?{runs}")
        page.wait_for_selector('.chart[aria-label="loss over steps"][data-drawn] canvas')
        assert page.locator(".u-legend .u-series").count() >= 4  # the x axis and three runs
        page.screenshot(path=str(shots / "62-runs-compared.png"), full_page=True)
        page.goto(f"{inproc.url}{PORTAL}models/ranker")
        page.click("#aliases button")  # roll @champion back to v1
        page.wait_for_selector("p.msg")
        assert "back on version 1" in page.inner_text("p.msg")
        assert page.inner_text('#aliases tr[data-alias="champion"]').count("v1") == 1
        assert page.locator("#history tr").count() == 4  # a header and three moves
        page.screenshot(path=str(shots / "63-model-history.png"), full_page=True)
    finally:
        context.close()
