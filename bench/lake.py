"""Benchmark: the data path, a user's keys against the lake administrator's, on one SeaweedFS.

LakeHub: a hub from ``lakehub up --detach``, a user from ``lakehub user add``, and that user's
own lake credentials from ``GET /api/lake/credentials`` (with the user's API token): the
bucket-scoped identity every notebook gets. Objects go to the user's bucket ``NAME-bench``.

Anchor, same run: the same ``weed`` process with the lake administrator's key (from the hub's
state directory, ``runtime.tokens()``): raw SeaweedFS, no scoping. It writes to the same bucket
under its own prefix, so both sides' objects sit in one collection on the same volume servers
and the key is the only difference (a bucket of its own is another collection, whose volumes a
cluster may place on other servers).

``--lake s3-iam``: the lake is an S3 service LakeHub does not run (SeaweedFS with its IAM API,
started by the benchmark as an operator would, ``tests/hubs.py`` ``S3Service``); the user's key
is one the service issued, their rights an IAM policy it evaluates on every request; the anchor
is the same service with the operator's key.

``--lake cluster``: the lake is a SeaweedFS cluster as ``lakehub.server.lake.cluster`` renders it,
on four hosts played by network namespaces (a gateway, three volume servers, replication 001;
root only), reached through the same IAM route. Anchors: the cluster with the operator's key,
and ``weed mini`` on one host with its operator's key.

Each round measures, for both sides, in alternating order:
  * small objects: N PUTs of 4 KiB from a pool of T threads, one boto3 client each (PUT/s);
  * large object: upload of one file with boto3's transfer manager, then its download twice,
    the sides in mirrored order (A B B A), a side's figure the mean of its two (MB/s).

    .venv/bin/python bench/lake.py [--rounds 5] [--objects 2000] [--large-mib 512]
                                   [--lake seaweedfs|s3-iam|cluster] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

MB = 1_000_000
MIB = 1024 * 1024
SMALL = 4096
RAW_BUCKET = "bench-raw"


def admin_credentials(hub: B.Hub) -> dict[str, str]:
    """The lake administrator's key (the anchor's), from the hub's state files."""
    from lakehub.server.config import load_settings
    from lakehub.server.runtime import load_runtime, tokens

    settings = load_settings(data_dir=hub.data_dir)
    rt, tok = load_runtime(settings), tokens(settings)
    assert rt is not None
    return {
        "endpoint_url": rt.s3_url,
        "access_key_id": tok.lake_key,
        "secret_access_key": tok.lake_secret,
    }


class Side:
    """One set of keys and a bucket: T clients for small objects, one for the large file."""

    def __init__(
        self, label: str, creds: dict[str, str], bucket: str, threads: int, prefix: str = ""
    ) -> None:
        self.label, self.bucket, self.prefix = label, bucket, prefix
        self.clients = [B.s3_for(creds, max_pool_connections=16) for _ in range(threads)]
        self.small: list[float] = []
        self.upload: list[float] = []
        self.download: list[float] = []

    def small_puts(self, n: int, round_no: int) -> float:
        body = os.urandom(SMALL)
        t = len(self.clients)
        keys = [f"{self.prefix}small/r{round_no}/{i:06d}" for i in range(n)]

        def work(i: int) -> None:
            s3 = self.clients[i]
            for key in keys[i::t]:
                s3.put_object(Bucket=self.bucket, Key=key, Body=body)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(t) as pool:
            list(pool.map(work, range(t)))
        rate = n / (time.perf_counter() - t0)
        self.small.append(rate)
        s3 = self.clients[0]  # not timed: keep the bucket the same size for every round
        for start in range(0, n, 1000):
            objs = [{"Key": k} for k in keys[start : start + 1000]]
            s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objs, "Quiet": True})
        return rate

    def upload_large(self, path: Path) -> float:
        t0 = time.perf_counter()
        self.clients[0].upload_file(str(path), self.bucket, f"{self.prefix}large.bin")
        up = path.stat().st_size / MB / (time.perf_counter() - t0)
        self.upload.append(up)
        return up

    def download_large(self, path: Path, back: Path, check: bool) -> float:
        size = path.stat().st_size
        t0 = time.perf_counter()
        self.clients[0].download_file(self.bucket, f"{self.prefix}large.bin", str(back))
        down = size / MB / (time.perf_counter() - t0)
        if back.stat().st_size != size or (check and digest(back) != digest(path)):
            raise RuntimeError(f"{self.label}: the downloaded file differs from the uploaded one")
        back.unlink()
        self.download.append(down)
        return down


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--objects", type=int, default=2000, help="4 KiB PUTs per round and side")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--large-mib", type=int, default=512)
    ap.add_argument("--lake", choices=("seaweedfs", "s3-iam", "cluster"), default="seaweedfs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("lake")
    marker = str(root)
    service = B.S3Service(root / "service") if args.lake != "seaweedfs" else None
    cluster = contextlib.ExitStack()
    hub = B.bench_hub(root)
    problems: list[str] = []
    loads: list[tuple[float, float, float]] = []
    sides: list[Side] = []
    try:
        print(f"lake data path benchmark ({args.lake}): {args.rounds} rounds, data in {root}")
        lake: dict[str, str] = {}
        if service:
            service.start()
            lake = service.settings()
        if args.lake == "cluster":
            (root / "cluster").mkdir()
            rendered, _ = cluster.enter_context(B.lake_cluster(root / "cluster"))
            lake = rendered.settings
        hub.env |= {f"LAKEHUB_{k.upper()}": v for k, v in lake.items()}
        hub.up(timeout=900)
        name = f"bench{secrets.token_hex(3)}"
        hub.add_user(name)
        user = hub.credentials(name)
        if lake:
            admin = {
                "endpoint_url": lake["lake_endpoint_url"],
                "access_key_id": lake["lake_admin_key_id"],
                "secret_access_key": lake["lake_admin_secret"],
            }
        else:
            admin = admin_credentials(hub)
        if user["endpoint_url"] != admin["endpoint_url"]:
            raise RuntimeError(f"two endpoints: {user['endpoint_url']} {admin['endpoint_url']}")
        lh = Side("LakeHub: user's keys", user, f"{name}-bench", args.threads)
        label = {
            "seaweedfs": "raw SeaweedFS, admin key",
            "s3-iam": "the service, operator's key",
            "cluster": "the cluster, operator's key",
        }[args.lake]
        sides = [lh, Side(f"anchor: {label}", admin, lh.bucket, args.threads, "anchor/")]
        if args.lake == "cluster" and service:
            one = Side("anchor: weed mini, one host", service.admin(), RAW_BUCKET, args.threads)
            sides.append(one)
        for side in (lh, *sides[2:]):
            side.clients[0].create_bucket(Bucket=side.bucket)
        big, back = root / "large.bin", root / "large.back"
        with big.open("wb") as f:
            for _ in range(args.large_mib):
                f.write(os.urandom(MIB))
        for side in sides:  # warm-up, not counted: connections, first volume of each bucket
            side.small_puts(200, -1)
            side.small, side.upload, side.download = [], [], []
        for r in range(args.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            loads.append(os.getloadavg())
            line: dict[str, str] = {}
            for side in order:
                line[side.label] = f"{side.small_puts(args.objects, r):7.0f} PUT/s"
            for side in order:
                line[side.label] += f"  up {side.upload_large(big):6.1f} MB/s"
            # downloads twice, in mirrored order (A B B A): a round's drift in the machine's
            # load weighs on both sides alike; a side's round figure is the mean of its two
            for side in [*order, *order[::-1]]:
                side.download_large(big, back, check=r == 0)
            for side in order:
                side.download[-2:] = [sum(side.download[-2:]) / 2]
                line[side.label] += f"  down {side.download[-1]:6.1f} MB/s"
            print(
                f"  round {r + 1}/{args.rounds} (load {loads[-1][0]:.2f}): "
                + " | ".join(f"{k.split(',')[0]} {v}" for k, v in line.items()),
                flush=True,
            )
    finally:
        for side in sides:
            for client in side.clients:
                client.close()
        if (hub.data_dir / "run" / "runtime.json").exists():
            problems += hub.down()
        if service:  # the operator's, not a leftover
            service.stop()
        cluster.close()
        problems += B.reap(marker, wait=5)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    cols = ["median", "min", "max"]
    metrics: list[tuple[str, Callable[[Side], list[float]]]] = [
        (
            f"small objects: PUT/s ({SMALL // 1024} KiB, {args.objects} per round, "
            f"{args.threads} threads, one boto3 client each)",
            lambda s: s.small,
        ),
        (
            f"large object upload: MB/s ({args.large_mib} MiB, boto3 transfer manager)",
            lambda s: s.upload,
        ),
        (
            f"large object download: MB/s ({args.large_mib} MiB, boto3 transfer manager)",
            lambda s: s.download,
        ),
    ]
    summary: dict[str, dict[str, Any]] = {}
    for title, get in metrics:
        print(f"\n{title}")
        a = get(sides[0])
        summary[title] = {"lakehub": B.summary(a)}
        for anchor in sides[1:]:
            b = get(anchor)
            rows = B.stats_rows(sides[0].label, a, anchor.label, b, cols)
            print(B.table(["", "n", *cols], rows))
            paired = B.summary([B.ratio(x, y) for x, y in zip(a, b, strict=True)])["median"]
            print(f"median of the per-round ratios (same round, same load): {B.fmt(paired, 'x')}")
            summary[title][anchor.label] = {
                "anchor": B.summary(b),
                "ratio_paired": paired,
                "ratio_median": B.ratio(B.summary(a)["median"], B.summary(b)["median"]),
            }
    print("\nratio > 1: LakeHub's path is faster than the anchor's; < 1: slower.")
    print("load average during the rounds: " + ", ".join(f"{x[0]:.2f}" for x in loads))
    print()
    total = B.print_footer(started, info, problems, "leftover processes")
    path = B.write_results(
        {"seaweedfs": "lake", "s3-iam": "lake-iam", "cluster": "lake-cluster"}[args.lake],
        {
            "benchmark": "lake",
            "host": info,
            "args": vars(args),
            "loadavg_rounds": loads,
            "samples": {
                s.label: {
                    "small_put_per_s": s.small,
                    "upload_mb_s": s.upload,
                    "download_mb_s": s.download,
                }
                for s in sides
            },
            "summary": summary,
            "problems": problems,
            "total_seconds": total,
        },
    )
    print(f"results: {path}")
    return 0 if sides and sides[0].small and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
