"""External S3 connections against a real second SeaweedFS: API, CLI, SDK, portal, notebooks.

The "external endpoint" is a separate ``weed mini`` on free loopback ports with its own identity
file, as an AWS account, a Ceph gateway or another team's SeaweedFS would be.
The API, CLI, SDK and portal tests run in-process (tests/inproc.py); notebooks, the secret in a
hub's logs and the browser run on a real hub.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pandas as pd
import pytest
from botocore.config import Config

from conftest import Hub
from inproc import InProc
from kernel import Kernel, start_server, stop_server
from lakehub.server.lake.seaweedfs import SeaweedFS

API = "/services/lakehub/api/connections"
PORTAL = "/services/lakehub/connections"
ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class External:
    url: str
    key: str
    secret: str
    bucket: str = "ext-data"


def _ports(n: int) -> list[int]:
    held = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
    ports = [int(s.getsockname()[1]) for s in held]
    for s in held:
        s.close()
    return ports


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[External]:
    folder = tmp_path_factory.mktemp("external-s3")
    key, secret = "EXT" + secrets.token_hex(8).upper(), "ext-" + secrets.token_urlsafe(30)
    (folder / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "owner",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    names = [
        f"{n}{g}" for n in ("master", "volume", "filer", "s3", "lake_admin") for g in ("", "_grpc")
    ]
    ports = dict(zip(names, _ports(len(names)), strict=True))
    # the hub's own lake command line, on a folder and ports of its own (data in folder/lake)
    weed = str(Path(sys.executable).parent / "weed")
    lake = SeaweedFS(folder, folder, ports, key, secret, weed).process()
    argv, weed_env = lake.argv, lake.env
    s3 = ports["s3"]
    (folder / "lake").mkdir()
    log = open(folder / "weed.log", "wb")  # noqa: SIM115 (open while the process runs)
    proc = subprocess.Popen(
        argv,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **weed_env},
        start_new_session=True,
    )
    ext = External(f"http://127.0.0.1:{s3}", key, secret)
    try:
        client = s3_client(ext.url, key, secret)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=ext.bucket)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((folder / "weed.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        client.put_object(Bucket=ext.bucket, Key="x.csv", Body=b"city,n\nOslo,3\nLima,5\n")
        yield ext
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def s3_client(url: str, key: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def body(ext: External, name: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "endpoint_url": ext.url,
        "access_key_id": ext.key,
        "secret_access_key": ext.secret,
        **kw,
    }


def add(
    hub: Hub | InProc, user: str, ext: External, name: str = "ext", **kw: Any
) -> httpx.Response:
    with hub.http(user) as c:
        return c.post(API, json=body(ext, name, **kw))


def test_create_list_and_read_back_through_the_api(inproc: InProc, inproc_user, external) -> None:
    a = inproc_user("a")
    r = add(inproc, a, external, bucket=external.bucket, region="eu-west-1")
    assert r.status_code == 201, r.text
    assert external.secret not in r.text
    with inproc.http(a) as c:
        listed = c.get(API)
        assert listed.status_code == 200
        assert [x["name"] for x in listed.json()] == ["ext"]
        row = listed.json()[0]
        assert row["endpoint_url"] == external.url and row["bucket"] == external.bucket
        assert row["region"] == "eu-west-1" and row["access_key_id"] == external.key
        assert "secret_access_key" not in row and external.secret not in listed.text
        creds = c.get(f"{API}/ext/credentials")
        assert creds.status_code == 200 and creds.headers["cache-control"] == "no-store"
        assert creds.json()["secret_access_key"] == external.secret
        assert c.post(API, json=body(external, "ext")).status_code == 409
        assert c.delete(f"{API}/ext").status_code == 204
        assert c.get(API).json() == []
        assert c.get(f"{API}/ext/credentials").status_code == 404
    # the SDK: credentials ready for boto3 and fsspec, the secret kept out of reprs
    import lakehub

    with lakehub.connect(inproc.url, inproc.token(a)) as client:
        client.connections.create("sdk", external.url, external.key, external.secret)
        assert [x["name"] for x in client.connections.list()] == ["sdk"]
        conn = client.connections.get("sdk")
        assert external.secret not in repr(conn) and external.key in repr(conn)
        got = conn.boto3_client().get_object(Bucket=external.bucket, Key="x.csv")
        assert got["Body"].read().startswith(b"city,n")
        assert conn.filesystem().cat(f"{external.bucket}/x.csv").endswith(b"Lima,5\n")
        df = pd.read_csv(f"s3://{external.bucket}/x.csv", storage_options=conn.storage_options())
        assert int(df.n.sum()) == 8
    # every change is in the audit trail, never with the secret
    with inproc.http("admin") as c:
        events = c.get("/services/lakehub/api/events").json()
    mine = [e for e in events if e["target"].startswith(f"{a}/")]
    assert {(e["action"], e["target"]) for e in mine} >= {
        ("connection.create", f"{a}/ext"),
        ("connection.delete", f"{a}/ext"),
        ("connection.create", f"{a}/sdk"),
    }
    assert all(external.secret not in json.dumps(e) for e in events)


def test_bad_input_and_refused_credentials_are_clear_400s(
    inproc: InProc, inproc_user, external
) -> None:
    a = inproc_user("a")
    wrong = External(external.url, external.key, "wrong-" + secrets.token_urlsafe(20))
    r = add(inproc, a, wrong)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == (
        f"cannot use {external.url}: the secret key does not match the "
        "access key; nothing was saved"
    )
    r = add(inproc, a, External(external.url, "NOSUCHKEY", external.secret))
    assert r.status_code == 400 and "does not know this access key" in r.json()["detail"]
    r = add(inproc, a, external, bucket="no-such-bucket")
    assert r.status_code == 400 and "no such bucket" in r.json()["detail"]
    (down,) = _ports(1)
    r = add(inproc, a, External(f"http://127.0.0.1:{down}", external.key, external.secret))
    assert r.status_code == 400 and r.json()["detail"].startswith("cannot reach"), r.text
    cases = {
        "ftp://127.0.0.1/": "must start with http:// or https://",
        "http://": "names no host",
        "not a url": "without spaces",
        "": "endpoint is missing",
    }
    for endpoint, message in cases.items():
        r = add(inproc, a, External(endpoint, external.key, external.secret))
        assert r.status_code == 400 and message in r.json()["detail"], (endpoint, r.text)
    for name, message in (("Bad_Name", "invalid connection name"), ("default", "reserved")):
        r = add(inproc, a, external, name=name)
        assert r.status_code == 400 and message in r.json()["detail"], r.text
    with inproc.http(a) as c:
        r = c.post(
            API,
            json={"name": "nosecret", "endpoint_url": external.url, "access_key_id": external.key},
        )
        assert r.status_code == 400 and "secret key is missing" in r.json()["detail"]
        assert c.get(API).json() == []  # nothing refused was kept
    # without the check, unverified keys are accepted (for endpoints not reachable from the hub)
    assert add(inproc, a, wrong, name="later", verify=False).status_code == 201


def test_other_users_cannot_see_read_delete_or_browse(
    inproc: InProc, inproc_user, external
) -> None:
    a, b = inproc_user("a"), inproc_user("b")
    assert add(inproc, a, external).status_code == 201
    assert add(inproc, b, external, name="mine").status_code == 201  # names are per user
    with inproc.http(b) as c:
        assert [x["name"] for x in c.get(API).json()] == ["mine"]
        for method, path in (
            ("GET", f"{API}/ext"),
            ("GET", f"{API}/ext/credentials"),
            ("DELETE", f"{API}/ext"),
        ):
            r = c.request(method, path)
            assert r.status_code == 404 and r.json()["detail"] == "no connection named 'ext'"
            assert external.secret not in r.text
    with inproc.http("admin") as c:  # administrators included
        assert c.get(f"{API}/ext/credentials").status_code == 404
    browser = inproc.browser_login(b)
    r = browser.get(f"{PORTAL}/ext/browse")
    assert r.status_code == 404 and "no connection named" in r.text
    r = browser.get(f"{PORTAL}/ext/browse/{external.bucket}", params={"key": "x.csv"})
    assert r.status_code == 404 and "Lima" not in r.text
    r = browser.post(f"{PORTAL}/ext/delete")
    assert "no connection named" in r.text
    assert 'data-connection="ext"' not in browser.get(PORTAL).text
    with inproc.http(a) as c:
        assert [x["name"] for x in c.get(API).json()] == ["ext"]


def cli(
    hub: Hub | InProc, user: str, *args: str, secret: str | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHUB_"))}
    env |= {"LAKEHUB_API_URL": hub.url, "LAKEHUB_TOKEN": hub.token(user)}
    if secret is not None:
        env["LAKEHUB_CONNECTION_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "connection", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_cli_add_ls_rm(inproc: InProc, inproc_user, external) -> None:
    a = inproc_user("a")
    base = ("add", "viacli", "--endpoint", external.url, "--access-key", external.key)
    out = cli(inproc, a, *base, "--bucket", external.bucket, secret=external.secret)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"added connection viacli -> {external.url} (credentials checked)"
    assert external.secret not in out.stdout + out.stderr
    listing = cli(inproc, a, "ls")
    assert listing.returncode == 0 and listing.stdout.split()[:2] == ["viacli", external.url]
    assert external.secret not in listing.stdout
    out = cli(inproc, a, *base[:1], "other", *base[2:], secret="wrong-secret-value")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: cannot use ")
    assert "wrong-secret-value" not in out.stderr
    out = cli(inproc, a, *base[:1], "other", *base[2:])  # no secret and no terminal to ask in
    assert out.returncode == 1 and "LAKEHUB_CONNECTION_SECRET" in out.stderr
    b = inproc_user("b")
    out = cli(inproc, b, "rm", "viacli")
    assert out.returncode == 1 and out.stderr == "error: no connection named 'viacli'\n"
    assert cli(inproc, a, "rm", "viacli").stdout == "removed connection viacli\n"


def test_portal_lists_adds_browses_and_deletes(inproc: InProc, inproc_user, external) -> None:
    a = inproc_user("a")
    c = inproc.browser_login(a)
    page = c.get(PORTAL)
    assert page.status_code == 200 and 'id="none"' in page.text
    assert f'<a href="{PORTAL}">Connections</a>' in page.text  # the nav link
    form = {
        "name": "web",
        "endpoint_url": external.url,
        "access_key_id": external.key,
        "secret_access_key": "wrong-" + external.secret,
        "verify": "1",
    }
    r = c.post(PORTAL, data=form)
    assert r.status_code == 400 and "the secret key does not match" in r.text
    assert external.secret not in r.text and 'value="web"' in r.text  # the form is kept
    r = c.post(
        PORTAL,
        data=form | {"secret_access_key": external.secret},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    r = c.post(PORTAL, data=form | {"secret_access_key": external.secret})
    assert r.status_code == 200 and "Connection web added." in r.text
    assert 'data-connection="web"' in r.text and external.secret not in r.text
    r = c.get(f"{PORTAL}/web/browse")
    assert r.status_code == 200 and f'href="{PORTAL}/web/browse/{external.bucket}"' in r.text
    r = c.get(f"{PORTAL}/web/browse/{external.bucket}")
    assert 'data-key="x.csv"' in r.text
    assert 'class="register"' not in r.text  # not the lake's: nothing to catalogue here
    r = c.get(f"{PORTAL}/web/browse/{external.bucket}", params={"key": "x.csv"})
    assert "<th>city</th>" in r.text and "<td>Lima</td>" in r.text and 'id="delete"' not in r.text
    link = r.text.split('id="download" href="')[1].split('"')[0].replace("&amp;", "&")
    assert link.startswith(external.url) and httpx.get(link).content.startswith(b"city,n")
    r = c.get(f"{PORTAL}/web/browse/no-such-bucket")
    assert r.status_code == 404 and "No such bucket." in r.text
    r = c.post(f"{PORTAL}/web/delete")
    assert "Connection web deleted." in r.text and 'data-connection="web"' not in r.text


def test_notebook_profiles_reach_the_endpoint_and_the_default_the_lake(
    hub: Hub, new_user, external
) -> None:
    a = new_user("nb")
    assert add(hub, a, external, name="ext").status_code == 201
    start_server(hub.url, a, hub.token(a))
    k = Kernel(hub.url, a, hub.token(a))
    try:
        out, err = k.run(
            "import os, boto3, s3fs, pandas as pd\n"
            f"b = {external.bucket!r}\n"
            "s3 = boto3.Session(profile_name='ext').client('s3')\n"
            "print(s3.get_object(Bucket=b, Key='x.csv')['Body'].read().decode().split()[0])\n"
            "print(s3fs.S3FileSystem(profile='ext').cat(f'{b}/x.csv').decode().split()[2])\n"
            "df = pd.read_csv(f's3://{b}/x.csv', storage_options={'profile': 'ext'})\n"
            "print(int(df.n.sum()))\n"
            "lake = boto3.client('s3')\n"
            "print(sorted(x['Name'] for x in lake.list_buckets()['Buckets']))\n"
            f"lake.put_object(Bucket='{a}-home', Key='k.txt', Body=b'lake')\n"
            f"print(s3fs.S3FileSystem().cat('{a}-home/k.txt').decode())\n"
            f"pd.DataFrame({{'x': [1, 2]}}).to_parquet('s3://{a}-home/t.parquet')\n"  # pyarrow's S3
            f"print(int(pd.read_parquet('s3://{a}-home/t.parquet').x.sum()))\n"
            "print(os.environ['AWS_CONFIG_FILE'])\n"
        )
        assert err is None, err
        lines = out.splitlines()
        assert lines[:6] == ["city,n", "Lima,5", "8", f"['{a}-home']", "lake", "3"], out
        config = Path(lines[6])
        text = config.read_text()
        assert "[profile ext]" in text and external.secret not in text and external.key not in text
        if ROOT:  # readable by the user's account only
            import grp

            st = config.stat()
            assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
            assert grp.getgrgid(st.st_gid).gr_name == f"lh-{a}"
        # a connection made while the server runs works there at once, and one deleted goes
        assert add(hub, a, external, name="later").status_code == 201
        out, err = k.run(
            "print(boto3.Session(profile_name='later').client('s3').list_buckets()"
            "['Buckets'][0]['Name'])\n"
        )
        assert err is None and out.strip() == external.bucket, (out, err)
        with hub.http(a) as c:
            assert c.delete(f"{API}/later").status_code == 204
        out, err = k.run("boto3.Session(profile_name='later')")
        assert err is not None and err.startswith("ProfileNotFound"), (out, err)
    finally:
        k.close()
        stop_server(hub.url, a, hub.token(a))


def test_the_secret_is_in_no_log_no_listing_and_not_in_the_database(
    hub: Hub, new_user, external
) -> None:
    a = new_user("a")
    assert add(hub, a, external, name="audit").status_code == 201
    with hub.http(a) as c:
        assert external.secret not in c.get(API).text
    needle = external.secret.encode()
    db = sorted((hub.data_dir / "state").glob("lakehub.sqlite*"))
    assert db and all(needle not in p.read_bytes() for p in db), db
    found = [
        p for p in (hub.data_dir / "logs").rglob("*") if p.is_file() and needle in p.read_bytes()
    ]
    assert found == []
    profiles = list((hub.data_dir / "aws").glob("*.config"))
    assert profiles and all(needle not in p.read_bytes() for p in profiles)


@pytest.mark.browser
def test_connections_page_in_a_browser(
    hub: Hub, new_user, external, artifacts: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    from conftest import PAGE_TIMEOUT_MS
    from test_browser import log_in_from_front_door

    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    a = new_user("web")
    try:
        ctx = browser.new_context(base_url=hub.url, viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(PAGE_TIMEOUT_MS)
        page = ctx.new_page()
        log_in_from_front_door(page, hub, a)
        page.get_by_role("link", name="Connections").click()
        expect(page.locator("#none")).to_be_visible()
        page.fill("#name", "archive")
        page.fill("#endpoint_url", external.url)
        page.fill("#bucket", external.bucket)
        page.fill("#access_key_id", external.key)
        page.fill("#secret_access_key", external.secret)
        page.click("#add-connection")
        expect(page.locator('tr[data-connection="archive"]')).to_be_visible()
        expect(page.get_by_role("status")).to_have_text("Connection archive added.")
        assert external.secret not in page.content()
        page.screenshot(path=str(shots / "connections-01-list.png"), full_page=True)
        page.get_by_role("link", name="archive", exact=True).click()
        page.get_by_role("link", name=external.bucket).click()
        page.get_by_role("link", name="x.csv").click()
        expect(page.locator("#preview td", has_text="Lima")).to_be_visible()
        page.screenshot(path=str(shots / "connections-02-preview.png"), full_page=True)
        page.get_by_role("link", name="Connections").click()
        page.once("dialog", lambda d: d.accept())
        page.click("#delete-archive")
        expect(page.get_by_role("status")).to_have_text("Connection archive deleted.")
        expect(page.locator("#none")).to_be_visible()
    finally:
        ctx.close()
