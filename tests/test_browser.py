"""The product as a person sees it: headless Chromium logs in, uses the portal, starts JupyterLab.

Screenshots land in ``test-artifacts/browser/``. Uses Debian's Chromium (no Playwright downloads).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import PAGE_TIMEOUT_MS, Hub
from kernel import Kernel

pytestmark = pytest.mark.browser

LAB_TIMEOUT_MS = 90_000  # spawning a server and loading JupyterLab
PORTAL = "/services/lakehub/"

expect.set_options(timeout=PAGE_TIMEOUT_MS)


@pytest.fixture
def shots(artifacts: Path) -> Path:
    path = artifacts / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def new_page(browser: Browser, hub: Hub) -> Iterator[Any]:
    """A factory of pages, each in its own fresh context (own cookies); all closed afterwards."""
    contexts = []

    def make() -> Page:
        ctx = browser.new_context(base_url=hub.url, viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(PAGE_TIMEOUT_MS)
        ctx.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def screenshot(page: Page, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    assert path.is_file() and path.stat().st_size > 0, path
    return path


def log_in(page: Page, name: str, password: str) -> None:
    """Fill JupyterHub's login form (the page must already show it) and submit."""
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    with page.expect_navigation():
        page.click("#login_submit")


def log_in_from_front_door(page: Page, hub: Hub, name: str, password: str | None = None) -> None:
    page.goto(hub.url)
    expect(page).to_have_url(re.compile(r"/hub/login"))
    log_in(page, name, password or hub.passwords[name])


def expect_portal(page: Page, name: str) -> None:
    expect(page).to_have_url(re.compile(re.escape(PORTAL) + r"(\?.*)?$"))
    expect(page.locator("h1")).to_have_text(f"Welcome, {name}")


def submit(page: Page, button: str) -> int:
    """Click a form's submit button; the HTTP status of the page it leads to."""
    with page.expect_navigation() as nav:
        page.get_by_role("button", name=button).click()
    response = nav.value
    return response.status if response else 0


def stop_server(hub: Hub, name: str) -> None:
    """Best effort: don't leave a notebook server running after the test."""
    try:
        with hub.http(name) as c:
            c.delete(f"/hub/api/users/{name}/server")
    except (httpx.HTTPError, AssertionError):
        pass


def test_login_portal_and_jupyterlab(hub: Hub, new_user: Any, new_page: Any, shots: Path) -> None:
    name = new_user("web")
    page = new_page()

    # the front door sends a stranger to JupyterHub's login page
    page.goto(hub.url)
    expect(page).to_have_url(re.compile(r"/hub/login"))
    expect(page.locator("#signup-link")).to_be_visible()
    screenshot(page, shots / "01-login-page.png")

    # logging in lands on the LakeHub portal
    log_in(page, name, hub.passwords[name])
    expect_portal(page, name)
    conn = page.locator("#data-connection")
    expect(conn.locator("#bucket")).to_have_text(f"{name}-home")
    expect(conn.locator("#endpoint")).to_have_text(re.compile(r"^https?://"))
    expect(conn.locator("#access-key")).to_have_text(re.compile(r"\S{8,}"))
    expect(conn.locator("#secret-key")).to_be_hidden()  # tucked away in <details>
    expect(conn.locator("#rotate")).to_be_visible()
    expect(page.locator("#servers #start-server")).to_be_visible()
    screenshot(page, shots / "02-portal-no-server.png")

    secret = f"form-secret-{secrets.token_hex(8)}"
    try:
        # the spawn form: environments with what is inside, sizes, variables
        page.click("#start-server")
        form = page.locator("#lakehub-spawn-form")
        expect(form).to_be_visible()
        expect(page.locator("input[name=environment][value=datascience]")).to_be_checked()
        expect(form).to_contain_text("pandas ")  # with its version
        expect(form).to_contain_text("Idle servers stop after")
        page.check("input[name=environment][value=minimal]")
        page.select_option("#lh-size", "small")
        page.locator("input[name=var_name]").first.fill("FORM_SECRET")
        page.locator("input[name=var_value]").first.fill(secret)
        screenshot(page, shots / "03-spawn-form.png")
        # starting the server ends in JupyterLab
        page.click("#spawn_form [type=submit]")
        page.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=LAB_TIMEOUT_MS)
        page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=LAB_TIMEOUT_MS)
        page.locator(".jp-Launcher").first.wait_for(state="visible", timeout=LAB_TIMEOUT_MS)
        screenshot(page, shots / "03b-jupyterlab.png")
        # JupyterLab's top bar leads back to the portal (and asks the internet for no news)
        page.locator(".lm-MenuBar-itemLabel", has_text="LakeHub").click()
        publish = page.locator(".lm-Menu-itemLabel", has_text="Publish Notebook as a Read-Only")
        expect(publish).to_be_visible()  # JupyterLab's LakeHub extension is loaded
        screenshot(page, shots / "03c-jupyterlab-lakehub-menu.png")
        with page.expect_popup() as opened:
            page.locator(".lm-Menu-itemLabel", has_text="LakeHub portal").click()
        expect_portal(opened.value, name)
        opened.value.close()
        with hub.http(name) as c:
            notes = f"/user/{name}/lab/api/settings/@jupyterlab/apputils-extension:notification"
            got = c.get(notes).json()["schema"]["properties"]  # overrides are the defaults
        assert (got["fetchNews"]["default"], got["checkForUpdates"]["default"]) == ("false", False)
        # the command's server side publishes a notebook as it is saved, as its user
        with hub.http(name) as c:
            nb = {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [
                    {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# From the lab"}
                ],
            }
            put = c.put(
                f"/user/{name}/api/contents/Lab%20Report.ipynb",
                json={"type": "notebook", "format": "json", "content": nb},
            )
            assert put.status_code in (200, 201), put.text
            r = c.post(f"/user/{name}/lakehub/publish", json={"path": "Lab Report.ipynb"})
            assert r.status_code == 200, r.text
            assert r.json()["name"] == "lab-report" and r.json()["version"] == 1
            shown = c.get(r.json()["path"], headers={"accept": "text/html"})
            assert shown.status_code == 200 and "From the lab" in shown.text
            bad = c.post(f"/user/{name}/lakehub/publish", json={"path": "nosuch.ipynb"})
            assert bad.status_code == 404 and "no notebook" in bad.json()["message"]
        # ... and the command itself, on the open notebook: a second version, its link shown
        page.goto(f"{hub.url}/user/{name}/lab/tree/Lab%20Report.ipynb")
        page.locator(".jp-Notebook").first.wait_for(state="visible", timeout=LAB_TIMEOUT_MS)
        page.locator(".jp-Dialog-button", has_text="Select").click()  # its kernel: the default
        page.locator(".lm-MenuBar-itemLabel", has_text="LakeHub").click()
        page.locator(".lm-Menu-itemLabel", has_text="Publish Notebook as a Read-Only").click()
        page.locator(".jp-Dialog-button", has_text="Ok").click()  # every LakeHub user
        done = page.locator(".jp-Dialog-header", has_text="Published: lab-report, version 2")
        done.wait_for(state="visible", timeout=60_000)
        expect(page.locator(".jp-Dialog-body")).to_contain_text("/services/lakehub/pub/")
        screenshot(page, shots / "03d-jupyterlab-published.png")
        page.locator(".jp-Dialog-button", has_text="Close").click()

        # the secret reached the kernel, from the chosen environment, and is in clear nowhere
        k = Kernel(hub.url, name, hub.token(name))
        try:
            out, err = k.run(
                "import os; print(os.environ['LAKEHUB_ENVIRONMENT'],"
                " os.environ['FORM_SECRET'] == " + repr(secret) + ")"
            )
        finally:
            k.close()
        assert (err, out.split()) == (None, ["minimal", "True"])
        with hub.http(name) as c:
            listed = c.get("/services/lakehub/api/env").json()
            assert {"name": "FORM_SECRET", "secret": True, "value": None}.items() <= next(
                v for v in listed if v["name"] == "FORM_SECRET"
            ).items()
            for path in (
                "/services/lakehub/api/env",
                "/services/lakehub/api/servers",
                f"/hub/api/users/{name}",
            ):
                assert secret not in c.get(path).text
        for f in [*(hub.data_dir / "state").rglob("*"), *(hub.data_dir / "logs").rglob("*")]:
            if f.is_file():
                assert secret.encode() not in f.read_bytes(), f

        # back on the portal, the server is offered for opening
        page.goto(PORTAL)
        expect_portal(page, name)
        row = page.locator("#servers [data-server=default]")
        expect(row).to_contain_text("minimal")
        expect(row).to_contain_text("small")
        expect(page.locator("#servers #open-server")).to_be_visible()
        expect(page.locator("#servers #start-server")).to_have_count(0)
        screenshot(page, shots / "04-portal-server-running.png")

        # the environments page shows what each environment has
        page.goto(PORTAL + "environments")
        expect(page.locator("[data-environment=datascience]")).to_contain_text("scikit-learn")
        expect(page.locator("[data-size=small]")).to_be_visible()
        screenshot(page, shots / "04b-environments.png")
    finally:
        stop_server(hub, name)


def test_wrong_password_shows_error(hub: Hub, new_user: Any, new_page: Any, shots: Path) -> None:
    name = new_user("web")
    page = new_page()
    log_in_from_front_door(page, hub, name, "not-" + hub.passwords[name])
    expect(page).to_have_url(re.compile(r"/hub/login"))
    expect(page.locator(".login_error")).to_contain_text("Invalid username or password")
    expect(page.locator("#login_submit")).to_be_visible()
    screenshot(page, shots / "05-login-wrong-password.png")


def test_signup_approval_then_login(hub: Hub, new_page: Any, shots: Path) -> None:
    name = f"s{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    page = new_page()

    # request an account from the login page
    page.goto("/hub/login")
    page.click("#signup-link")
    expect(page).to_have_url(re.compile(re.escape(PORTAL) + "signup"))
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.fill("input[name=confirm]", password + "x")  # a typo: the form says so, keeps the name
    assert submit(page, "Request account") == 400
    expect(page.locator("[role=alert]")).to_contain_text("The two passwords differ")
    expect(page.locator("input[name=name]")).to_have_value(name)
    page.fill("input[name=password]", password)
    page.fill("input[name=confirm]", password)
    screenshot(page, shots / "06-signup-form.png")
    assert submit(page, "Request account") == 200, page.content()[:500]
    expect(page.locator("[role=status]")).to_contain_text("administrator must approve")
    screenshot(page, shots / "07-signup-done.png")

    # not yet: the login page says why
    page.goto("/hub/login")
    log_in(page, name, password)
    expect(page.locator(".login_error")).to_contain_text("waiting for an administrator's approval")
    screenshot(page, shots / "08-login-pending.png")

    # the admin approves, in a browser of their own
    admin = new_page()
    log_in_from_front_door(admin, hub, "admin", hub.passwords["admin"])
    expect_portal(admin, "admin")
    admin.goto(PORTAL + "admin")
    row = admin.locator(f'tr[data-user="{name}"]')
    expect(row).to_contain_text("pending")
    screenshot(admin, shots / "09-admin-pending-user.png")
    with admin.expect_navigation():
        row.get_by_role("button", name="Approve").click()
    expect(admin.locator("[role=status]")).to_contain_text(f"approve: {name} done")
    expect(row).to_contain_text("active")
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)
    screenshot(admin, shots / "10-admin-approved.png")

    # now the person gets in and lands on the portal
    page.goto("/hub/login")
    log_in(page, name, password)
    expect_portal(page, name)
    expect(page.locator("#bucket")).to_have_text(f"{name}-home")
    screenshot(page, shots / "11-portal-after-approval.png")


def test_signup_with_taken_name_shows_error(
    hub: Hub, new_user: Any, new_page: Any, shots: Path
) -> None:
    taken = new_user("web")
    page = new_page()
    page.goto(PORTAL + "signup")
    page.fill("input[name=name]", taken)
    password = secrets.token_urlsafe(12)
    page.fill("input[name=password]", password)
    page.fill("input[name=confirm]", password)
    assert submit(page, "Request account") == 409, page.content()[:500]
    expect(page.locator("[role=alert]")).to_contain_text("already exists")
    expect(page.locator("input[name=name]")).to_have_value(taken)  # the form is offered again
    screenshot(page, shots / "12-signup-name-taken.png")


def test_api_page_renders_from_the_hub_alone(hub: Hub, new_page: Any, shots: Path) -> None:
    """The API page draws its operations with Swagger UI served by the hub itself: a browser
    that may reach nothing else (as on a hub without internet) sees the same page."""
    page = new_page()
    elsewhere: list[str] = []

    def only_the_hub(route: Any) -> None:
        if route.request.url.startswith(hub.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_hub)
    page.goto(PORTAL + "docs")
    expect(page.locator("header .brand")).to_have_text("LakeHub")  # the product's own look
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.get_by_text("/services/lakehub/api/lake/credentials").first).to_be_visible()
    assert elsewhere == []
    screenshot(page, shots / "13-api-page.png")


def _no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_jupyterhub_pages_wear_the_lakehub_look_and_lead_back(
    hub: Hub, new_user: Any, new_page: Any, shots: Path
) -> None:
    """JupyterHub's own pages (login, its home, which JupyterLab's File > Hub Control Panel
    opens, its errors) carry LakeHub's navigation and style, also at phone width."""
    name = new_user("look")
    page = new_page()
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/hub/login")
    header = page.locator("header.lh-header")
    expect(header.locator("a.brand")).to_have_text("LakeHub")
    assert (
        page.evaluate(  # the style came from the package, through the front door
            "getComputedStyle(document.querySelector('.lh-header')).backgroundColor"
        )
        == "rgb(18, 53, 91)"
    )
    assert _no_sideways_scroll(page)
    screenshot(page, shots / "20-phone-login.png")
    log_in(page, name, hub.passwords[name])
    # JupyterHub's own pages: the spawn form and "server not running" too, and its errors
    pending = f"/hub/spawn-pending/{name}"
    for path in ("/hub/home", "/hub/token", "/hub/spawn", pending, "/hub/no-such-page"):
        page.goto(path)
        expect(header.get_by_role("link", name="Datasets")).to_be_visible()
        expect(header).to_contain_text(name)
        assert _no_sideways_scroll(page), path
        if path == pending:
            screenshot(page, shots / "20b-phone-server-not-running.png")
    expect(page.locator("h1")).to_have_text("Not found")  # not "404 : None", no moons
    expect(page.get_by_role("link", name="Back to the portal's home")).to_be_visible()
    screenshot(page, shots / "21-phone-hub-error.png")
    page.goto("/hub/home")
    with page.expect_navigation():
        header.get_by_role("link", name="Home").click()
    expect_portal(page, name)
    assert _no_sideways_scroll(page)
    screenshot(page, shots / "22-phone-portal-home.png")


def test_everyday_jobs_are_done_in_the_portal(
    hub: Hub, new_user: Any, new_page: Any, shots: Path
) -> None:
    """A person, then an administrator, do in the browser what used to need the CLI: a token,
    a password, a space with a grant, a source; a quota, a size, a group's policy, and the
    list of what runs. Every page carries the navigation; secrets are shown once."""
    name, reader = new_user("every"), new_user("reader")
    page = new_page()
    log_in_from_front_door(page, hub, name)
    header = page.locator("header.lh-header")
    header.get_by_role("link", name=name).click()  # the account, from the navigation
    expect(page.locator("h1")).to_have_text("Your account")
    page.fill("input[name=note]", "nightly export")
    assert submit(page, "New token") == 200
    token = page.locator("#token-value").inner_text()
    assert len(token) > 20 and token not in page.url
    screenshot(page, shots / "30-account-new-token.png")
    page.reload()
    expect(page.locator("#tokens")).to_contain_text("nightly export")
    assert token not in page.content()  # shown once
    page.fill("input[name=current]", hub.passwords[name])
    page.fill("input[name=new]", "a-new-password-1")
    page.fill("input[name=confirm]", "a-new-password-1")
    assert submit(page, "Change password") == 200
    expect(page.locator("body")).to_contain_text("Password changed.")
    hub.passwords[name] = "a-new-password-1"
    # a space, opened to a reader
    header.get_by_role("link", name="Spaces").click()
    space = f"s{secrets.token_hex(3)}"
    page.fill("input[name=name]", space)
    assert submit(page, "Create") == 200
    page.fill("input[name=grantee]", reader)
    assert submit(page, "Grant") == 200
    expect(page.locator(f'tr[data-grant="user-{reader}"]')).to_contain_text("read")
    screenshot(page, shots / "31-space-granted.png")
    # a source: its token and key on the answering page only
    header.get_by_role("link", name="Streams").click()
    page.fill("#new-source-form input[name=name]", f"src{secrets.token_hex(2)}")
    page.fill("#new-source-form input[name=tags]", "plant.*")
    assert submit(page, "Create source") == 201
    expect(page.locator("#source-token")).to_contain_text("lhs_")
    screenshot(page, shots / "32-source-created.png")
    # the administrator: a quota, a size, a group's policy, what runs
    admin = new_page()
    log_in_from_front_door(admin, hub, "admin")
    admin.goto(PORTAL + "admin")
    form = admin.locator("#set-quota")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=max_bytes]").fill("lots")
    assert submit(admin, "Set quota") == 400  # kept as typed, with the reason
    expect(admin.locator("#set-quota input[name=max_bytes]")).to_have_value("lots")
    admin.locator("#set-quota input[name=max_bytes]").fill("2 GiB")
    assert submit(admin, "Set quota") == 200
    expect(admin.locator(f'tr[data-quota="user-{name}"]')).to_be_visible()
    expect(admin.locator("#running")).to_contain_text("Notebook servers")
    screenshot(admin, shots / "33-admin-quota-running.png")
    admin.goto(PORTAL + "environments")
    size = f"x{secrets.token_hex(2)}"
    admin.locator("#put-size input[name=name]").fill(size)
    admin.locator("#put-size input[name=cpus]").fill("1")
    admin.locator("#put-size input[name=memory]").fill("1 GiB")
    assert submit(admin, "Save size") == 200
    expect(admin.locator(f'tr[data-size="{size}"]')).to_be_visible()
    admin.locator("#put-policy input[name=name]").fill(name)
    admin.locator("#put-policy select[name=kind]").select_option("user")
    admin.locator("#put-policy input[name=idle_minutes]").fill("45")
    assert submit(admin, "Save policy") == 200
    expect(admin.locator(f'tr[data-policy="user-{name}"]')).to_contain_text("45 min")
    screenshot(admin, shots / "34-admin-sizes-policies.png")


TUTORIAL = Path(__file__).parents[1] / "docs" / "tutorial" / "first-hour.md"


def tutorial_cell(name: str) -> str:
    """Step 4's notebook code, as the tutorial prints it, for user ``name``."""
    step = TUTORIAL.read_text().split("\n4. ")[1].split("\n5. ")[0]
    code = step.split("```python\n")[1].split("```")[0]
    return "\n".join(line.strip() for line in code.splitlines()).replace(
        "admin-home", f"{name}-home"
    )


def test_the_tutorial_from_the_login_page_to_a_cell_reading_a_dataset(
    hub: Hub, new_user: Any, new_page: Any, shots: Path
) -> None:
    """docs/tutorial/first-hour.md as a person follows it: the login page, the portal, "Start
    my server", the spawn form, JupyterLab, a new notebook running the tutorial's own cell (it
    publishes a dataset and reads it back), then the portal's Datasets page and the dataset's."""
    name = new_user("tut")
    page = new_page()
    log_in_from_front_door(page, hub, name)
    expect_portal(page, name)
    expect(page.locator("#data-connection #bucket")).to_have_text(f"{name}-home")
    screenshot(page, shots / "40-tutorial-portal.png")
    try:
        page.get_by_role("link", name="Start my server").click()
        expect(page.locator("#lakehub-spawn-form")).to_be_visible()
        screenshot(page, shots / "41-tutorial-spawn-form.png")
        started = time.monotonic()
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=LAB_TIMEOUT_MS)
        page.locator(".jp-LauncherCard[data-category=Notebook]").first.click(timeout=LAB_TIMEOUT_MS)
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.click(timeout=LAB_TIMEOUT_MS)
        page.keyboard.insert_text(tutorial_cell(name))  # as typed, without auto-indent
        # a cell run while the kernel is still starting may be lost: a person waits for Idle
        idle = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle"))
        idle.first.wait_for(timeout=LAB_TIMEOUT_MS)
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-OutputArea-output").first
        output.wait_for(timeout=LAB_TIMEOUT_MS)
        shown = screenshot(page, shots / "42-tutorial-cell.png")
        expect(output.locator("table"), f"see {shown}").to_contain_text("x")
        print(
            f"the portal's Start to the tutorial cell's output: {time.monotonic() - started:.1f} s"
        )
        page.goto(PORTAL + "datasets")
        row = page.locator("#datasets [data-name=first]")
        expect(row).to_contain_text(f"s3://{name}-home/datasets/first/")
        expect(row).to_contain_text("2")  # rows
        screenshot(page, shots / "43-tutorial-datasets.png")
        row.get_by_role("link", name="first").click()
        expect(page.locator("h1")).to_contain_text("first")
        screenshot(page, shots / "44-tutorial-dataset.png")
    finally:
        stop_server(hub, name)
