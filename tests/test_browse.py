"""Browsing the lake in the portal with the user's own rights: list, preview, download, delete.

In-process (tests/inproc.py): a portal session over a real lake, no hub."""

from __future__ import annotations

import io

import httpx
import pandas as pd

from conftest import creds_of, s3_for
from inproc import InProc


def test_browse_preview_download_and_delete(inproc: InProc, inproc_user) -> None:
    name = inproc_user()
    bucket = f"{name}-home"
    s3 = s3_for(creds_of(inproc, name))
    s3.put_object(Bucket=bucket, Key="docs/readme.txt", Body=b"hello <b>lake</b>")
    s3.put_object(Bucket=bucket, Key="docs/table.csv", Body=b"city,n\nOslo,3\nLima,5\n")
    s3.put_object(Bucket=bucket, Key="docs/conf.json", Body=b'{"a": [1, 2]}')
    buf = io.BytesIO()
    pd.DataFrame({"x": range(50), "y": [f"v{i}" for i in range(50)]}).to_parquet(buf)
    s3.put_object(Bucket=bucket, Key="docs/t.parquet", Body=buf.getvalue())
    s3.put_object(Bucket=bucket, Key="docs/broken.parquet", Body=b"not parquet at all")
    c = inproc.browser_login(name)
    base = "/services/lakehub/browse"
    assert bucket in c.get(base).text
    root = c.get(f"{base}/{bucket}").text
    assert "docs/" in root
    listing = c.get(f"{base}/{bucket}", params={"prefix": "docs/"}).text
    for f in ("readme.txt", "table.csv", "conf.json", "t.parquet"):
        assert f'data-key="docs/{f}"' in listing
    assert ">17 B<" in listing and 'title="17 bytes"' in listing  # sizes as people read them
    s3.put_object(Bucket=bucket, Key="docs/", Body=b"")  # a folder marker, as consoles make
    s3.put_object(Bucket=bucket, Key="docs/big.bin", Body=b"x" * 1536)
    listing = c.get(f"{base}/{bucket}", params={"prefix": "docs/"}).text
    assert 'data-key="docs/"' not in listing  # no blank row for the folder itself
    assert ">1.5 KiB<" in listing
    page = c.get(f"{base}/{bucket}", params={"key": "docs/readme.txt"}).text
    assert "hello &lt;b&gt;lake&lt;/b&gt;" in page  # shown, escaped
    page = c.get(f"{base}/{bucket}", params={"key": "docs/table.csv"}).text
    assert "<th>city</th>" in page and "<td>Lima</td>" in page
    page = c.get(f"{base}/{bucket}", params={"key": "docs/t.parquet"}).text
    assert "50 rows; first 20 shown" in page and "<td>v19</td>" in page
    page = c.get(f"{base}/{bucket}", params={"key": "docs/broken.parquet"}).text
    assert "cannot read this Parquet file" in page
    # the download link is a presigned URL that goes straight to the lake
    link = page.split('id="download" href="')[1].split('"')[0].replace("&amp;", "&")
    assert httpx.get(link).content == b"not parquet at all"
    r = c.post(f"{base}/{bucket}/delete", data={"key": "docs/broken.parquet"})
    assert "deleted docs/broken.parquet" in r.text
    assert "broken.parquet" not in c.get(f"{base}/{bucket}", params={"prefix": "docs/"}).text


def test_browsing_is_limited_to_ones_own_rights(inproc: InProc, inproc_user) -> None:
    a, b = inproc_user("a"), inproc_user("b")
    s3_for(creds_of(inproc, a)).put_object(Bucket=f"{a}-home", Key="secret.txt", Body=b"A's")
    c = inproc.browser_login(b)
    base = "/services/lakehub/browse"
    assert f"{a}-home" not in c.get(base).text
    r = c.get(f"{base}/{a}-home")
    assert r.status_code == 403 and "You may not read this." in r.text
    r = c.get(f"{base}/{a}-home", params={"key": "secret.txt"})
    assert r.status_code == 403 and "A&#39;s" not in r.text and "A's" not in r.text
    r = c.post(f"{base}/{a}-home/delete", data={"key": "secret.txt"})
    assert "You may not read this." in r.text
    got = s3_for(creds_of(inproc, a)).get_object(Bucket=f"{a}-home", Key="secret.txt")
    assert got["Body"].read() == b"A's"


def test_a_file_is_registered_from_the_lake_browser(inproc: InProc, inproc_user) -> None:
    """Each row of the lake browser links to the register form, filled in from the path."""
    name = inproc_user()
    bucket = f"{name}-home"
    s3_for(creds_of(inproc, name)).put_object(
        Bucket=bucket, Key="in/Sales 2026.csv", Body=b"region,amount\nnorth,3\nsouth,5\n"
    )
    c = inproc.browser_login(name)
    listing = c.get(f"/services/lakehub/browse/{bucket}", params={"prefix": "in/"}).text
    link = listing.split('class="register" href="')[1].split('"')[0].replace("&amp;", "&")
    form = c.get(link).text
    path = f"s3://{bucket}/in/Sales 2026.csv"
    assert f'value="{path}"' in form and 'value="sales_2026"' in form
    assert "<option selected>csv</option>" in form
    r = c.post(
        "/services/lakehub/datasets",
        data={"name": "sales_2026", "path": path, "format": "csv"},
    )
    assert r.status_code == 200 and "sales_2026" in r.text, r.text[-2000:]
    with inproc.http(name) as api:
        got = api.get("/services/lakehub/api/datasets/sales_2026")
        assert got.status_code == 200, got.text
        assert (got.json()["format"], got.json()["file_count"]) == ("csv", 1)
    # one file is shown as the file it is, not as a folder
    assert got.json()["path"] == path
    page = c.get("/services/lakehub/datasets/sales_2026").text
    assert f"<code>{path}</code>" in page


def test_the_catalog_forms_keep_what_was_typed_and_describe_and_refresh(
    inproc: InProc, inproc_user
) -> None:
    name, other = inproc_user(), inproc_user()
    bucket = f"{name}-home"
    s3 = s3_for(creds_of(inproc, name))
    s3.put_object(Bucket=bucket, Key="logs/a.csv", Body=b"n,v\n1,a\n2,b\n")
    c = inproc.browser_login(name)
    # a refused registration: the form comes back as it was typed, with the reason
    typed = {
        "name": "weblogs",
        "path": f"s3://{bucket}/nothing-here/",
        "format": "csv",
        "tags": "web 2026",
        "description": "requests of the shop",
    }
    r = c.post("/services/lakehub/datasets", data=typed)
    assert r.status_code == 400 and "nothing found under" in r.text, r.text[-1500:]
    for value in typed.values():
        assert f'value="{value}"' in r.text or f"<option selected>{value}</option>" in r.text
    r = c.post("/services/lakehub/datasets", data={**typed, "path": f"s3://{bucket}/logs/"})
    assert r.status_code == 200
    with inproc.http(name) as api:
        before = api.get("/services/lakehub/api/datasets/weblogs").json()
    assert before["path"] == f"s3://{bucket}/logs/" and before["row_count"] == 2
    # described from its page; a bad tag keeps the form as typed
    page = "/services/lakehub/datasets/weblogs"
    r = c.post(f"{page}/edit", data={"description": "all requests", "tags": "web BAD!"})
    assert r.status_code == 400 and "all requests</textarea>" in r.text
    assert 'value="web BAD!"' in r.text
    r = c.post(f"{page}/edit", data={"description": "all requests", "tags": "web, shop"})
    assert r.status_code == 200 and "saved" in r.text
    # refreshed: a new file counts
    s3.put_object(Bucket=bucket, Key="logs/b.csv", Body=b"n,v\n3,c\n")
    r = c.post(f"{page}/refresh")
    assert r.status_code == 200 and "refreshed: 2 files, 3 rows" in r.text, r.text[-1500:]
    with inproc.http(name) as api:
        after = api.get("/services/lakehub/api/datasets/weblogs").json()
    assert (after["description"], after["tags"]) == ("all requests", ["shop", "web"])
    assert (after["file_count"], after["row_count"]) == (2, 3)
    # someone who may not write there has no forms, and the routes refuse them
    o = inproc.browser_login(other)
    assert o.get(page).status_code == 404  # not even seen: the bucket is not theirs
    r = o.post(f"{page}/edit", data={"description": "mine now", "tags": ""})
    assert r.status_code == 404
    r = o.post(f"{page}/refresh", follow_redirects=False)
    assert r.status_code == 303 and "error=no+dataset" in r.headers["location"]
    with inproc.http(name) as api:
        assert api.get("/services/lakehub/api/datasets/weblogs").json()["description"] == (
            "all requests"
        )
