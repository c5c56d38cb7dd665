"""The streams page as a person sees it (headless Chromium), and background tasks that outlive
the process that submitted them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

import lakehub
from conftest import Hub
from ingest_client import moved, port, setup, user
from lakehub.compute import tasks


@pytest.fixture
def ih(ingest_hub: Hub) -> Hub:
    return ingest_hub


@pytest.mark.browser
def test_the_streams_page_shows_counters_errors_and_a_preview(
    ih: Hub, browser: Browser, artifacts: Path
) -> None:
    a = user(ih, "pp")
    tok = setup(ih, a, "plantlogs", ["plant.*"])["token"]
    url = f"http://127.0.0.1:{port(ih, 'ingest_http')}"
    auth = {"Authorization": f"Bearer {tok}"}
    lines = b"".join(b'{"machine": "press-%d", "temp": %d}\n' % (i, 60 + i) for i in range(12))
    r = httpx.post(
        f"{url}/plant.line1",
        content=lines,
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    assert (
        httpx.post(
            f"{url}/plant.line1",
            content=b"{bad",
            headers={**auth, "Content-Type": "application/json"},
        ).status_code
        == 400
    )
    moved(ih, a, "plantlogs", 12)
    # a reading that is not a number: kept beside the temperatures, which stay numbers
    r = httpx.post(
        f"{url}/plant.line1",
        content=b'{"machine": "press-x", "temp": "hot"}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    moved(ih, a, "plantlogs", 13)
    ih.wait(
        lambda: (
            lakehub.streams.get("plantlogs", client=lakehub.connect(ih.url, ih.token(a)))["errors"]
            >= 2
        ),
        10,
        "the refusal and the misfit to be counted",
    )
    ctx = browser.new_context(base_url=ih.url, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto("/hub/login")
    page.fill("input[name=username]", a)
    page.fill("input[name=password]", ih.passwords[a])
    page.click("input[type=submit], button[type=submit]")
    page.goto("/services/lakehub/streams")
    row = page.locator("#streams tr[data-name=plantlogs]")
    expect(row.locator(".moved")).to_contain_text("13 records")
    expect(row.locator(".errors")).to_have_text("2")
    expect(row.locator(".rate")).to_contain_text("msg/s")
    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "streams.png"), full_page=True)
    row.locator("a").click()
    expect(page.locator("#preview")).to_contain_text("press-3")
    errors = page.locator("#recent-errors")  # every recent error, not only the last
    expect(errors).to_contain_text("invalid JSON")
    expect(errors).to_contain_text("1 in 'temp' (e.g. 'hot'), kept in 'temp__text'")
    expect(page.locator("#errors")).to_have_text("2")
    page.screenshot(path=str(shots / "stream.png"), full_page=True)
    ctx.close()


SUBMIT = r"""
import sys, lakehub
from lakehub.compute import tasks

def slow_sum(n, pause):
    import time
    time.sleep(pause)
    return sum(range(n))

def broken():
    raise ValueError("no such sensor")

c = lakehub.connect(sys.argv[1], sys.argv[2])
print(tasks.submit(slow_sum, 1000, pause=1.0, client=c).id,
      tasks.submit(broken, client=c).id)
"""


def test_a_task_outlives_the_process_that_submitted_it(ih: Hub) -> None:
    a = user(ih, "tk")
    out = subprocess.run(
        [sys.executable, "-c", SUBMIT, ih.url, ih.token(a)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    good, bad = out.stdout.split()  # the submitting process has exited by now
    client = lakehub.connect(ih.url, ih.token(a))
    t = tasks.get(good, client=client)
    assert t.result(timeout=120) == sum(range(1000))
    assert t.info["state"] == "done" and t.info["started_at"] and t.info["finished_at"]
    f = tasks.get(bad, client=client)
    assert f.wait(timeout=120) == "failed"
    assert "ValueError: no such sensor" in f.info["error"]
    with pytest.raises(lakehub.client.LakeHubError):
        f.result(timeout=5)
    assert {x.id for x in tasks.list(client=client)} == {good, bad}
    other = lakehub.connect(ih.url, ih.token(user(ih, "tko")))
    with pytest.raises(lakehub.client.LakeHubError) as err:
        tasks.get(good, client=other)
    assert err.value.status == 404


def test_the_cli_manages_streams_and_sources(ih: Hub) -> None:
    a = user(ih, "cli")
    out = ih.cli("stream", "create", "clistream", "--owner", a, "--tag", "cli.*").stdout
    assert f"s3://{a}-home/streams/clistream/" in out
    out = ih.cli("source", "add", "clisrc", "--owner", a, "--tag", "cli.*").stdout
    token = out.split("token: ")[1].split()[0]
    assert "shared key: " in out and "(shown once)" in out
    r = httpx.post(
        f"http://127.0.0.1:{port(ih, 'ingest_http')}/cli.x",
        json={"via": "cli"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    moved(ih, a, "clistream", 1)
    listed = ih.cli("stream", "list").stdout
    assert "clistream" in listed and "records=1" in listed
    refused = ih.cli("stream", "create", "clistream", "--owner", a, "--tag", "x.*", check=False)
    assert refused.returncode == 1 and f"{a} already has a stream" in refused.stderr
    assert "ingest" in ih.status()["components"]
