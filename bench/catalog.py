"""Benchmark: the dataset catalog. Registering a 1,000-file partitioned dataset, and ``.sql``
over >= 5 GB of Parquet in the lake, each against the same work done without LakeHub.

Register: ``POST /api/datasets`` (LakeHub lists the files, reads every Parquet footer, derives
schema, rows, size and partition values) against the same inference done in-process with
pyarrow and the same keys (list + dataset + count_rows + partition values).

SQL: ``lakehub.datasets.get(name).sql(query)`` against
  - DuckDB reading the same files directly through an fsspec filesystem (s3fs), the route
    DuckDB users take here (its httpfs extension cannot be downloaded), and
  - a hand-written pyarrow dataset registered in DuckDB (what the SDK does for you).
Each query runs in a fresh Python process that times only the query (imports excluded) and
reports its peak RSS. Variants alternate round by round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

import benchlib as B

QUERY = "select k, count(*) as n, sum(x) as sx, avg(y) as ay from data group by k order by k"
GOAL_SQL = 1.1

PROGRAMS = {
    "LakeHub .sql": """
import sys, time, resource, json, duckdb, pyarrow.dataset, lakehub
t = time.perf_counter()
d = lakehub.datasets.get(sys.argv[3], client=lakehub.connect(sys.argv[1], sys.argv[2]))
r = d.sql(sys.argv[4], output="arrow")
""",
    "DuckDB + fsspec (s3fs)": """
import sys, time, resource, json, duckdb, s3fs
c = json.loads(sys.argv[5])
t = time.perf_counter()
fs = s3fs.S3FileSystem(key=c["access_key_id"], secret=c["secret_access_key"],
                       client_kwargs={"endpoint_url": c["endpoint_url"]})
con = duckdb.connect()
con.register_filesystem(fs)
files = f"s3://{c['bucket']}/big/**/*.parquet"
con.execute(f"create view data as select * from read_parquet('{files}', hive_partitioning=1)")
r = con.sql(sys.argv[4]).fetch_arrow_table()
""",
    "pyarrow dataset + DuckDB, by hand": """
import sys, time, resource, json, duckdb, pyarrow.dataset as ds
from urllib.parse import urlsplit
from pyarrow import fs as pafs
c = json.loads(sys.argv[5])
t = time.perf_counter()
u = urlsplit(c["endpoint_url"])
fs = pafs.S3FileSystem(access_key=c["access_key_id"], secret_key=c["secret_access_key"],
                       endpoint_override=u.netloc, scheme=u.scheme, region="us-east-1")
data = ds.dataset(f"{c['bucket']}/big", filesystem=fs, format="parquet", partitioning="hive")
con = duckdb.connect()
con.register("data", data)
r = con.sql(sys.argv[4]).fetch_arrow_table()
""",
}
TAIL = """
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": r.num_rows,
                  "n": int(sum(r.column("n").to_pylist())),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def s3fs_of(creds: dict[str, str]) -> Any:
    from lakehub.tables import s3_filesystem

    return s3_filesystem(creds["endpoint_url"], creds["access_key_id"], creds["secret_access_key"])


def write_many(fs: Any, bucket: str, files: int) -> int:
    """``files`` small Parquet files under year=/month=/day= folders; returns rows written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    days = [(y, m, d) for y in range(2020, 2030) for m in range(1, 13) for d in range(1, 29)]
    rows = 2000

    def one(i: int) -> None:
        y, m, d = days[i]
        rng = np.random.default_rng(i)
        t = pa.table(
            {
                "id": np.arange(rows) + i * rows,
                "v": rng.random(rows),
                "tag": rng.choice(["a", "b", "c"], rows),
            }
        )
        with fs.open_output_stream(f"{bucket}/many/year={y}/month={m}/day={d}/p.parquet") as out:
            pq.write_table(t, out)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(files)))
    return rows * files


def write_big(fs: Any, bucket: str, gib: float) -> tuple[int, int]:
    """64 MiB uncompressed Parquet files under part=0..7 up to ``gib`` GiB: (rows, bytes)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows_per_file = 64 * 1024 * 1024 // 20  # x float64, y int64, k int32
    files = max(1, round(gib * 1024 / 64))

    def one(i: int) -> None:
        rng = np.random.default_rng(1000 + i)
        t = pa.table(
            {
                "x": rng.random(rows_per_file),
                "y": rng.integers(0, 1 << 40, rows_per_file),
                "k": rng.integers(0, 100, rows_per_file).astype("int32"),
            }
        )
        with fs.open_output_stream(f"{bucket}/big/part={i % 8}/f{i:04d}.parquet") as out:
            pq.write_table(t, out, row_group_size=1 << 20, compression="none", use_dictionary=False)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(files)))
    from pyarrow.fs import FileSelector

    size = sum(f.size or 0 for f in fs.get_file_info(FileSelector(f"{bucket}/big", recursive=True)))
    return rows_per_file * files, size


def infer_by_hand(creds: dict[str, str], bucket: str) -> float:
    """What registration does, done in-process with pyarrow: the anchor for ``register``."""
    import pyarrow.dataset as ds
    from pyarrow import fs as pafs

    t = time.perf_counter()
    fs = s3fs_of(creds)
    files = [
        f
        for f in fs.get_file_info(pafs.FileSelector(f"{bucket}/many", recursive=True))
        if f.type == pafs.FileType.File
    ]
    data = ds.dataset(
        [f.path for f in files],
        filesystem=fs,
        format="parquet",
        partitioning="hive",
        partition_base_dir=f"{bucket}/many",
    )
    data.count_rows()
    {tuple(p.split("=")[0] for p in f.path.split("/")[2:-1]) for f in files}
    return time.perf_counter() - t


def run_query(label: str, hub: B.Hub, token: str, creds: dict[str, str]) -> dict[str, Any]:
    code = PROGRAMS[label] + TAIL
    proc = subprocess.run(
        [sys.executable, "-c", code, hub.url, token, "big", QUERY, json.dumps(creds)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        return {"ok": False, "error": proc.stderr.strip()[-800:]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["ok"] = True
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--gib", type=float, default=5.0)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("catalog")
    hub = B.bench_hub(root)
    problems: list[str] = []
    results: dict[str, Any] = {"benchmark": "catalog", "host": info, "args": vars(args)}
    api = None
    try:
        hub.up(timeout=900)
        hub.add_user("bench")
        token, creds = hub.token("bench"), hub.credentials("bench")
        bucket = creds["bucket"]
        fs = s3fs_of(creds)
        api = httpx.Client(
            base_url=f"{hub.url}/services/lakehub/api",
            timeout=1800,
            headers={"Authorization": f"token {token}"},
        )
        print(
            f"catalog benchmark: {args.files} small files, {args.gib} GiB big, {args.runs} runs",
            flush=True,
        )
        t = time.perf_counter()
        rows = write_many(fs, bucket, args.files)
        print(f"  wrote {args.files} files ({rows} rows) in {time.perf_counter() - t:.1f} s")
        reg: list[float] = []
        by_hand: list[float] = []
        for i in range(args.runs):
            by_hand.append(infer_by_hand(creds, bucket))
            t = time.perf_counter()
            r = api.post(
                "/datasets",
                json={"name": f"many{i}", "path": f"s3://{bucket}/many", "format": "parquet"},
            )
            reg.append(time.perf_counter() - t)
            if r.status_code != 201 or r.json()["row_count"] != rows:
                problems.append(f"register many{i}: {r.status_code} {r.text[:300]}")
            elif i == 0:
                d = r.json()
                parts = [(k, len(v)) for k, v in d["partitions"].items()]
                print(f"  registered: {d['file_count']} files, {d['row_count']} rows, {parts}")
            api.delete(f"/datasets/many{i}")
        t = time.perf_counter()
        big_rows, big_bytes = write_big(fs, bucket, args.gib)
        took = time.perf_counter() - t
        print(f"  wrote {big_bytes / 2**30:.2f} GiB ({big_rows} rows) in {took:.1f} s", flush=True)
        t = time.perf_counter()
        body = {"name": "big", "path": f"s3://{bucket}/big", "format": "parquet"}
        r = api.post("/datasets", json=body)
        big_register = time.perf_counter() - t
        if r.status_code != 201:
            raise RuntimeError(f"register big: {r.text}")
        samples: dict[str, list[dict[str, Any]]] = {label: [] for label in PROGRAMS}
        for i in range(args.runs):
            order = list(PROGRAMS) if i % 2 == 0 else list(reversed(PROGRAMS))
            for label in order:
                out = run_query(label, hub, token, creds)
                if not out["ok"] or out["n"] != big_rows:
                    problems.append(f"{label} round {i}: {out.get('error') or out}")
                samples[label].append(out)
                print(
                    f"  round {i + 1} {label}: {out.get('seconds', float('nan')):.2f} s, "
                    f"peak RSS {out.get('peak_rss_mib', '?')} MiB",
                    flush=True,
                )
        secs = {k: [s["seconds"] for s in v if s.get("ok")] for k, v in samples.items()}
        rss = {k: [s["peak_rss_mib"] for s in v if s.get("ok")] for k, v in samples.items()}
        print()
        print(f"register and infer {args.files} files ({rows} rows, year/month/day), seconds")
        cols = ("median", "min", "max")
        rows_out = [
            ["LakeHub POST /api/datasets", *(B.fmt(B.summary(reg)[c]) for c in cols)],
            ["anchor: pyarrow in-process", *(B.fmt(B.summary(by_hand)[c]) for c in cols)],
        ]
        print(B.table(["", *cols], rows_out))
        med = {k: B.summary(v)["median"] if v else float("nan") for k, v in secs.items()}
        reg_ratio = B.ratio(B.summary(reg)["median"], B.summary(by_hand)["median"])
        print(
            f"ratio LakeHub/anchor (medians): {reg_ratio:.2f}; register of the big dataset "
            f"({big_bytes / 2**30:.2f} GiB): {big_register:.2f} s"
        )
        print()
        print(f"SQL over {big_bytes / 2**30:.2f} GiB of Parquet ({big_rows} rows): {QUERY}")
        table_rows = []
        for label, xs in secs.items():
            s = B.summary(xs) if xs else {}
            peak = max(rss[label]) if rss[label] else float("nan")
            table_rows.append(
                [
                    label,
                    B.fmt(s.get("median")),
                    B.fmt(s.get("min")),
                    B.fmt(s.get("max")),
                    f"{peak:.0f}",
                    f"{big_bytes / 2**20 / s['median']:.0f}" if s else "-",
                ]
            )
        print(B.table(["", "median s", "min", "max", "peak RSS MiB", "MiB/s"], table_rows))
        lake = med["LakeHub .sql"]
        direct, hand = med["DuckDB + fsspec (s3fs)"], med["pyarrow dataset + DuckDB, by hand"]
        print(
            f"ratio LakeHub/DuckDB direct (fsspec): {B.ratio(lake, direct):.2f}; "
            f"LakeHub/by hand: {B.ratio(lake, hand):.2f}"
        )
        verdict = "met" if B.ratio(lake, direct) <= GOAL_SQL else "NOT met"
        print(f"goal: .sql <= {GOAL_SQL}x DuckDB reading the same files directly: {verdict}")
        results.update(
            {
                "register": reg,
                "register_anchor": by_hand,
                "big_register": big_register,
                "big_bytes": big_bytes,
                "big_rows": big_rows,
                "sql": samples,
                "query": QUERY,
            }
        )
    finally:
        if api is not None:
            api.close()
        problems += B.hub_down(hub, root, args.keep, wait=10)
    B.print_footer(started, info, problems, "problems")
    print(f"results: {B.write_results('catalog', results)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
