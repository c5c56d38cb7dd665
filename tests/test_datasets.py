"""The dataset catalog: register and infer, find, preview, load in one line, and who sees what.

In-process (tests/inproc.py): the catalog over a real lake, no hub."""

from __future__ import annotations

import io
import json
import secrets
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest

import lakehub
from conftest import creds_of, s3_for
from inproc import InProc
from lakehub.client import LakeHubError

API = "/services/lakehub/api/datasets"


def sales_frame(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "year": np.repeat([2023, 2024, 2025], rows // 3),
            "month": np.tile(np.arange(1, 4), rows // 3),
            "region": rng.choice(["north", "south", "east"], rows),
            "amount": rng.integers(1, 1000, rows).astype("int64"),
        }
    )


def uniq(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def test_create_infer_and_load_every_way(inproc: InProc, inproc_user) -> None:
    alice = inproc_user("al")
    client = lakehub.connect(inproc.url, inproc.token(alice))
    df = sales_frame()
    name = uniq("sales")
    ds = lakehub.datasets.create(
        name,
        df,
        partition_by=["year", "month"],
        client=client,
        description="Daily sales by region",
        tags=["Finance", "daily"],
    )
    assert ds.path == f"s3://{alice}-home/datasets/{name}/"
    assert ds.row_count == len(df)
    assert ds.partitioning == ["year", "month"]
    assert ds.info["partitions"] == {"year": ["2023", "2024", "2025"], "month": ["1", "2", "3"]}
    assert {"region", "amount", "year", "month"} <= {c["name"] for c in ds.schema}
    assert ds.info["file_count"] == 9 and ds.info["size_bytes"] > 0
    assert ds.info["tags"] == ["daily", "finance"] and ds.info["owner"] == alice

    again = lakehub.datasets.get(name, client=client)
    want = df[df.year == 2024].amount.sum()
    got = again.to_pandas(columns=["amount", "year"], filter=[("year", "=", 2024)])
    assert list(got.columns) == ["amount", "year"] and got.amount.sum() == want
    assert again.to_arrow(columns=["region"]).column_names == ["region"]
    assert int(again.to_polars()["amount"].sum()) == df.amount.sum()
    lazy = again.to_polars(lazy=True).filter(pl.col("year") == 2025)
    assert int(lazy.collect()["amount"].sum()) == df[df.year == 2025].amount.sum()
    dask_df = again.to_dask(columns=["amount"], filter=[("year", "in", [2023, 2025])])
    assert dask_df.npartitions == 6  # partition pruning: only the files of 2023 and 2025
    assert int(dask_df.amount.sum().compute()) == df[df.year != 2024].amount.sum()
    query = f'select region, sum(amount) as total from "{name}" group by region'  # noqa: S608
    by_region = again.sql(query)
    expected = df.groupby("region").amount.sum()
    assert dict(zip(by_region.region, by_region.total, strict=True)) == expected.to_dict()
    assert again.sql("select count(*) as n from data where month = 2").n[0] == (df.month == 2).sum()
    assert len(again.head(5)) == 5

    # a name is taken once; a second create writes nothing
    with pytest.raises(LakeHubError) as err:
        lakehub.datasets.create(name, df, client=client, path=f"s3://{alice}-home/other/")
    assert err.value.status == 409
    s3 = s3_for(creds_of(inproc, alice))
    assert s3.list_objects_v2(Bucket=f"{alice}-home", Prefix="other/").get("KeyCount", 0) == 0


def test_register_csv_jsonl_raw_and_search(inproc: InProc, inproc_user) -> None:
    bob = inproc_user("bo")
    s3 = s3_for(creds_of(inproc, bob))
    bucket = f"{bob}-home"
    for day in ("2024-01-01", "2024-01-02"):
        body = "sensor,value\n" + "".join(f"s{i},{i * 0.5}\n" for i in range(100))
        s3.put_object(Bucket=bucket, Key=f"csv/day={day}/part.csv", Body=body.encode())
    lines = "".join(json.dumps({"user": f"u{i}", "clicks": i}) + "\n" for i in range(42))
    s3.put_object(Bucket=bucket, Key="events/2024.jsonl", Body=lines.encode())
    s3.put_object(Bucket=bucket, Key="events/_SUCCESS", Body=b"")  # marker files are skipped
    s3.put_object(Bucket=bucket, Key="wav/a.wav", Body=b"RIFF" + b"\0" * 1000)
    with inproc.http(bob) as c:
        body = {
            "name": uniq("readings"),
            "path": f"s3://{bucket}/csv",
            "format": "csv",
            "tags": ["iot"],
            "description": "Sensor readings",
        }
        r = c.post(API, json=body)
        assert r.status_code == 201, r.text
        csv = r.json()
        assert csv["partitioning"] == ["day"] and csv["row_count"] == 200
        assert csv["partitions"] == {"day": ["2024-01-01", "2024-01-02"]}
        assert [c["name"] for c in csv["schema"]] == ["sensor", "value", "day"]
        r = c.post(
            API, json={"name": uniq("clicks"), "path": f"{bucket}/events/", "format": "jsonl"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["row_count"] == 42 and r.json()["file_count"] == 1
        r = c.post(
            API, json={"name": uniq("sounds"), "path": f"s3://{bucket}/wav/", "format": "raw"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["size_bytes"] == 1004 and r.json()["row_count"] is None
        found = c.get(API, params={"q": "sensor readings"}).json()
        assert [d["name"] for d in found] == [csv["name"]]
        assert [d["name"] for d in c.get(API, params={"tag": "iot"}).json()] == [csv["name"]]
        assert [d["name"] for d in c.get(API, params={"column": "clicks"}).json()] != []
        preview = c.get(f"{API}/{csv['name']}/preview", params={"limit": 3}).json()
        assert preview["columns"] == ["sensor", "value", "day"] and len(preview["rows"]) == 3
        r = c.patch(f"{API}/{csv['name']}", json={"lineage": "from the plant's loggers"})
        assert r.json()["lineage"] == "from the plant's loggers"
        # new files: refresh sees the new partition
        s3.put_object(Bucket=bucket, Key="csv/day=2024-01-03/part.csv", Body=b"sensor,value\nz,1\n")
        r = c.post(f"{API}/{csv['name']}/refresh")
        assert r.json()["row_count"] == 201 and len(r.json()["partitions"]["day"]) == 3


def test_zarr_store_is_described(inproc: InProc, inproc_user) -> None:
    zarr = pytest.importorskip("zarr")
    carol = inproc_user("ca")
    creds = creds_of(inproc, carol)
    opts = {
        "key": creds["access_key_id"],
        "secret": creds["secret_access_key"],
        "client_kwargs": {"endpoint_url": creds["endpoint_url"]},
    }
    arr = zarr.create_array(
        f"s3://{carol}-home/arrays/temps",
        shape=(1000, 16),
        chunks=(100, 16),
        dtype="float32",
        storage_options=opts,
    )
    arr[:] = np.ones((1000, 16), dtype="float32")
    with inproc.http(carol) as c:
        r = c.post(
            API,
            json={
                "name": uniq("temps"),
                "path": f"s3://{carol}-home/arrays/temps",
                "format": "zarr",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["row_count"] == 1000
        assert r.json()["schema"] == [{"name": "(root)", "type": "float32[1000, 16]"}]
        r = c.post(
            API,
            json={
                "name": uniq("nozarr"),
                "path": f"s3://{carol}-home/nothing-here",
                "format": "zarr",
            },
        )
        assert r.status_code == 400


def test_who_sees_a_dataset_follows_who_reads_its_space(inproc: InProc, inproc_user) -> None:
    owner, reader, outsider = inproc_user("ow"), inproc_user("rd"), inproc_user("ou")
    space = f"cat{secrets.token_hex(3)}"
    inproc.cli("space", "create", space, "--owner", owner)
    client = lakehub.connect(inproc.url, inproc.token(owner))
    name = uniq("shared")
    lakehub.datasets.create(name, sales_frame(30), client=client, path=f"s3://space-{space}/sales")
    private = uniq("private")
    lakehub.datasets.create(private, sales_frame(30), client=client)

    def sees(user: str, ds: str) -> bool:
        with inproc.http(user) as c:
            listed = ds in [d["name"] for d in c.get(API).json()]
            got = c.get(f"{API}/{ds}").status_code
            preview = c.get(f"{API}/{ds}/preview").status_code
        assert (got == 200) == listed == (preview == 200), (user, ds, listed, got, preview)
        return listed

    assert not sees(reader, name) and not sees(outsider, name) and not sees(reader, private)
    with inproc.http(owner) as c:
        r = c.put(
            f"/services/lakehub/api/spaces/{space}/grants", json={"user": reader, "access": "read"}
        )
        assert r.status_code == 200, r.text
    assert sees(reader, name) and not sees(outsider, name) and not sees(reader, private)
    reader_ds = lakehub.datasets.get(name, client=lakehub.connect(inproc.url, inproc.token(reader)))
    assert len(reader_ds.to_pandas()) == 30  # the reader's own keys read it from the lake
    with inproc.http(reader) as c:  # reading is not changing
        assert c.patch(f"{API}/{name}", json={"description": "mine now"}).status_code == 403
        assert c.delete(f"{API}/{name}").status_code == 403
        r = c.post(
            API,
            json={"name": uniq("grab"), "path": f"s3://space-{space}/sales", "format": "parquet"},
        )
        assert r.status_code == 403 and "cannot publish" in r.json()["detail"]
    with inproc.http(owner) as c:
        assert (
            c.delete(
                f"/services/lakehub/api/spaces/{space}/grants", params={"user": reader}
            ).status_code
            == 204
        )
    assert not sees(reader, name)
    with inproc.http(outsider) as c:  # unknown and invisible look the same
        assert c.get(f"{API}/{name}").json()["detail"] == c.get(f"{API}/nosuchdataset").json()[
            "detail"
        ].replace("nosuchdataset", name)


def test_bad_input_is_refused_and_leaves_nothing(inproc: InProc, inproc_user) -> None:
    dave, erin = inproc_user("dv"), inproc_user("er")
    s3 = s3_for(creds_of(inproc, dave))
    bucket = f"{dave}-home"
    good = io.BytesIO()
    sales_frame(30).to_parquet(good)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"mixed/part-{i}.parquet", Body=good.getvalue())
    s3.put_object(Bucket=bucket, Key="mixed/part-9.parquet", Body=b"PAR1 but not really")
    cases = [
        ({"path": f"s3://{bucket}/../{erin}-home", "format": "parquet"}, 400, "'..'"),
        ({"path": "s3://Bad_Bucket/x", "format": "parquet"}, 400, "invalid bucket"),
        ({"path": "http://example.com/x", "format": "parquet"}, 400, "not a lake path"),
        ({"path": f"s3://{bucket}/mixed", "format": "xls"}, 400, "unknown format"),
        ({"path": f"s3://{bucket}/mixed", "format": "parquet"}, 400, "part-9.parquet"),
        ({"path": f"s3://{bucket}/empty/", "format": "parquet"}, 400, "nothing found"),
        ({"path": f"s3://{erin}-home/", "format": "parquet"}, 403, "cannot publish"),
        (
            {"path": f"s3://{bucket}/mixed", "format": "parquet", "tags": ["no spaces"]},
            400,
            "invalid tag",
        ),
        (
            {"path": f"s3://{bucket}/mixed", "format": "parquet", "partitioning": ["a/b"]},
            400,
            "partition key",
        ),
    ]
    with inproc.http(dave) as c:
        for body, status, words in cases:
            name = uniq("bad")
            r = c.post(API, json={"name": name, **body})
            assert r.status_code == status and words in r.json()["detail"], (body, r.text)
            assert c.get(f"{API}/{name}").status_code == 404  # nothing half-registered
        assert (
            c.post(
                API, json={"name": "Bad Name", "path": f"s3://{bucket}/mixed", "format": "raw"}
            ).status_code
            == 400
        )
        s3.delete_object(Bucket=bucket, Key="mixed/part-9.parquet")
        name = uniq("fixed")
        assert (
            c.post(
                API, json={"name": name, "path": f"s3://{bucket}/mixed", "format": "parquet"}
            ).status_code
            == 201
        )
        r = c.post(API, json={"name": name, "path": f"s3://{bucket}/mixed", "format": "parquet"})
        assert r.status_code == 409
        assert c.get(f"{API}/{name}").json()["row_count"] == 90  # the first registration stands
        assert c.delete(f"{API}/{name}").status_code == 204
    assert s3.list_objects_v2(Bucket=bucket, Prefix="mixed/")["KeyCount"] == 3  # data stays


LIMIT = 640 * 1024 * 1024


def test_bigger_than_memory_is_registered_previewed_and_aggregated(
    inproc: InProc, inproc_user
) -> None:
    """1.5 GiB of Parquet, read by a process that may use 640 MiB in all, Python included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakehub.tables import s3_filesystem
    from memlimit import run_limited

    owner = inproc_user("big")
    creds = creds_of(inproc, owner)
    fs = s3_filesystem(creds["endpoint_url"], creds["access_key_id"], creds["secret_access_key"])
    rng = np.random.default_rng(11)
    rows, files, total, count = 4 * 1024 * 1024, 24, 0.0, 0  # 24 x 64 MiB
    for i in range(files):
        x = rng.random(rows)
        y = rng.integers(0, 1 << 62, rows)
        total, count = total + float(x.sum()), count + rows
        table = pa.table({"x": x, "y": y})
        with fs.open_output_stream(f"{owner}-home/big/part={i % 4}/f{i}.parquet") as out:
            pq.write_table(table, out, row_group_size=512 * 1024, compression="none")
    name = uniq("big")
    with inproc.http(owner) as c:
        r = c.post(API, json={"name": name, "path": f"s3://{owner}-home/big", "format": "parquet"})
        assert r.status_code == 201, r.text
        info = r.json()
        assert info["row_count"] == count and info["size_bytes"] > 2 * LIMIT
        assert info["partitions"] == {"part": ["0", "1", "2", "3"]}
        preview = c.get(f"{API}/{name}/preview", params={"limit": 5}).json()
        assert preview["columns"] == ["x", "y", "part"] and len(preview["rows"]) == 5
    code = (
        "import sys, lakehub\n"
        "d = lakehub.datasets.get(sys.argv[3], client=lakehub.connect(sys.argv[1], sys.argv[2]))\n"
        "print(len(d.head(5)))\n"
        "r = d.sql('select part, count(*) as n, sum(x) as s, max(y) from data group by part')\n"
        "print(int(r.n.sum()), repr(float(r.s.sum())), len(r))\n"
    )
    proc, stats = run_limited(
        [sys.executable, "-c", code, inproc.url, inproc.token(owner), name],
        LIMIT,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and stats["oom_kills"] == 0, (proc.stderr[-2000:], stats)
    lines = proc.stdout.splitlines()  # DuckDB may draw its progress bar in between
    head, line = lines[0], lines[-1]
    n, s, p = line.split()
    assert head == "5" and int(n) == count and int(p) == 4
    assert abs(float(s) - total) < 1e-6 * total
    assert stats["peak"] <= LIMIT < info["size_bytes"] / 2
    print(f"peak {stats['peak'] >> 20} MiB of {LIMIT >> 20} MiB for {info['size_bytes'] >> 20} MiB")


def test_portal_search_describe_register_and_forget(inproc: InProc, inproc_user) -> None:
    fay, gus = inproc_user("fa"), inproc_user("gu")
    s3 = s3_for(creds_of(inproc, fay))
    buf = io.BytesIO()
    sales_frame(30).drop(columns="year").to_parquet(buf)
    s3.put_object(Bucket=f"{fay}-home", Key="web/year=2024/a.parquet", Body=buf.getvalue())
    name = uniq("web")
    c = inproc.browser_login(fay)
    base = "/services/lakehub/datasets"
    r = c.post(
        base,
        data={
            "name": name,
            "path": f"s3://{fay}-home/web",
            "format": "parquet",
            "tags": "web, kpi",
            "description": "Shop <b>sales</b>",
        },
    )
    assert r.status_code == 200 and f"registered {name}" in r.text, (r.url, r.history)
    assert "Shop &lt;b&gt;sales&lt;/b&gt;" in r.text and 'id="rows">30<' in r.text
    assert "<th>region</th>" in r.text  # the preview's header
    assert "Partition year" in r.text
    listing = c.get(base, params={"tag": "kpi"}).text
    assert f'data-name="{name}"' in listing
    r = c.post(base, data={"name": uniq("nope"), "path": f"s3://{gus}-home/", "format": "parquet"})
    assert "cannot publish" in r.text
    other = inproc.browser_login(gus)
    assert f'data-name="{name}"' not in other.get(base).text
    assert other.get(f"{base}/{name}").status_code == 404
    other.post(f"{base}/{name}/delete")
    assert c.get(f"{base}/{name}").status_code == 200  # still there
    r = c.post(f"{base}/{name}/delete")
    assert "removed from the catalog" in r.text
    assert c.get(f"{base}/{name}").status_code == 404
    assert s3.head_object(Bucket=f"{fay}-home", Key="web/year=2024/a.parquet")["ContentLength"] > 0
