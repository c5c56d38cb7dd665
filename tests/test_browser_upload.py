"""Uploading from the portal in headless Chromium: progress, the listing, cancel, a refusal.

Screenshots land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

import test_browser
from conftest import Hub, creds_of, s3_for
from test_browser import PORTAL, log_in_from_front_door, screenshot

pytestmark = pytest.mark.browser
new_page, shots = test_browser.new_page, test_browser.shots
MIB = 1024 * 1024

# every text the progress counter shows, in order
RECORD_PROGRESS = """() => {
  window.seen = [];
  new MutationObserver(() => {
    for (const el of document.querySelectorAll("#uploads .pct")) {
      if (window.seen[window.seen.length - 1] !== el.textContent) window.seen.push(el.textContent);
    }
  }).observe(document.getElementById("uploads"), {subtree: true, childList: true,
                                                  characterData: true});
}"""


def open_bucket(page: Page, hub: Hub, name: str, bucket: str) -> None:
    log_in_from_front_door(page, hub, name)
    page.goto(f"{PORTAL}browse/{bucket}")
    expect(page.locator("#upload-files")).to_be_attached()


def test_upload_large_file_with_progress(
    hub: Hub, new_user: Any, new_page: Any, shots: Path, tmp_path: Path
) -> None:
    name = new_user("web")
    big, small = tmp_path / "big.bin", tmp_path / "notes.txt"
    big.write_bytes(os.urandom(20 * MIB))
    small.write_text("hello lake\n")
    page = new_page()
    open_bucket(page, hub, name, f"{name}-home")
    page.evaluate(RECORD_PROGRESS)
    page.set_input_files("#upload-files", [str(big), str(small)])
    page.click("#upload-start")
    row = page.locator('#uploads li[data-name="big.bin"]')
    expect(row.locator(".state")).to_have_text(f"uploaded ({20 * MIB} bytes)", timeout=60_000)
    expect(row.locator(".pct")).to_have_text("100%")
    expect(row.locator("progress")).to_have_attribute("value", "100")
    other = page.locator('#uploads li[data-name="notes.txt"] .state')
    expect(other).to_have_text("uploaded (11 bytes)")
    # the listing was refreshed in place, with the right sizes
    size = page.locator('tr.file[data-key="big.bin"] td').nth(1)
    expect(size).to_have_text("20.0 MiB")
    expect(size).to_have_attribute("title", f"{20 * MIB} bytes")
    size = page.locator('tr.file[data-key="notes.txt"] td').nth(1)
    expect(size).to_have_text("11 B")
    expect(size).to_have_attribute("title", "11 bytes")
    seen = page.evaluate("window.seen")
    between = [s for s in seen if s not in ("0%", "100%")]
    assert between and seen[-1] == "100%", seen  # it moved through values on its way
    screenshot(page, shots / "20-upload-done.png")
    s3 = s3_for(creds_of(hub, name))
    assert s3.get_object(Bucket=f"{name}-home", Key="big.bin")["Body"].read() == big.read_bytes()


def test_cancel_aborts_the_multipart_upload(
    hub: Hub, new_user: Any, new_page: Any, shots: Path, tmp_path: Path
) -> None:
    name = new_user("web")
    big = tmp_path / "cancel-me.bin"
    big.write_bytes(os.urandom(20 * MIB))
    s3 = s3_for(creds_of(hub, name))
    page = new_page()
    open_bucket(page, hub, name, f"{name}-home")
    held: list[Route] = []
    # part 2 never gets an answer: the upload is in flight when Cancel is clicked
    page.route(lambda url: "/parts/2?" in url, lambda route: held.append(route))
    page.set_input_files("#upload-files", str(big))
    page.click("#upload-start")
    row = page.locator('#uploads li[data-name="cancel-me.bin"]')
    expect(row.locator(".state")).to_have_text("part 2 of 3")
    # route handlers run only while Playwright is called, so wait through it (not time.sleep)
    for _ in range(300):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "part 2 was never sent"
    assert len(s3.list_multipart_uploads(Bucket=f"{name}-home").get("Uploads", [])) == 1
    screenshot(page, shots / "21-upload-in-flight.png")
    row.get_by_role("button", name="Cancel").click()
    expect(row.locator(".state")).to_have_text("cancelled")
    hub.wait(
        lambda: not s3.list_multipart_uploads(Bucket=f"{name}-home").get("Uploads"),
        30,
        "the multipart upload to be aborted",
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=f"{name}-home")
    screenshot(page, shots / "22-upload-cancelled.png")


def test_refused_upload_shows_why(
    hub: Hub, new_user: Any, new_page: Any, shots: Path, tmp_path: Path
) -> None:
    owner, reader = new_user("own"), new_user("web")
    space = f"ro{secrets.token_hex(3)}"
    hub.cli("space", "create", space, "--owner", owner)
    hub.cli("space", "grant", space, "--user", reader, "--access", "read")
    s3_for(creds_of(hub, owner)).put_object(Bucket=f"space-{space}", Key="data.txt", Body=b"v1")
    (tmp_path / "data.txt").write_text("overwritten")
    page = new_page()
    open_bucket(page, hub, reader, f"space-{space}")
    page.set_input_files("#upload-files", str(tmp_path / "data.txt"))
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    page.click("#upload-start")
    state = page.locator('#uploads li[data-name="data.txt"] .state')
    expect(state).to_have_text(f"failed: You may not write to space-{space}.")
    assert asked == ["data.txt already exists. Replace it?"]  # asked first, then refused
    size = page.locator('tr.file[data-key="data.txt"] td').nth(1)
    expect(size).to_have_text("2 B")
    expect(size).to_have_attribute("title", "2 bytes")
    page.click("#upload-start")  # nothing chosen
    expect(page.locator("#upload-error")).to_have_text("Choose one or more files first.")
    screenshot(page, shots / "23-upload-refused.png")
    got = s3_for(creds_of(hub, owner)).get_object(Bucket=f"space-{space}", Key="data.txt")
    assert got["Body"].read() == b"v1"


def test_a_part_lost_on_the_way_is_sent_again(
    hub: Hub, new_user: Any, new_page: Any, tmp_path: Path
) -> None:
    name = new_user("web")
    data = tmp_path / "flaky.bin"
    data.write_bytes(os.urandom(9 * MIB))
    page = new_page()
    open_bucket(page, hub, name, f"{name}-home")
    tries: list[str] = []

    def flaky(route: Route) -> None:
        tries.append(route.request.url)
        if len(tries) == 1:
            route.abort("connectionreset")  # the first try of part 2 never arrives
        else:
            route.continue_()

    page.route(lambda url: "/parts/2?" in url, flaky)
    page.set_input_files("#upload-files", str(data))
    page.click("#upload-start")
    state = page.locator('#uploads li[data-name="flaky.bin"] .state')
    expect(state).to_have_text(f"uploaded ({9 * MIB} bytes)")
    assert len(tries) == 2
    got = s3_for(creds_of(hub, name)).get_object(Bucket=f"{name}-home", Key="flaky.bin")
    assert got["Body"].read() == data.read_bytes()
