"""Benchmark: out-of-core reduction throughput, lakehub.arrays against plain Zarr + Dask.

One hub from ``lakehub up --detach``, one user, one array of ``--gib`` GiB (float64, 8 columns,
chunks of 2^19 rows = 32 MiB, LakeHub's default codec, or Zarr's with ``--zarr-codec``)
written with ``lakehub.arrays.append`` into the user's bucket. Each run is a fresh Python
process (imports, s3fs's and httpx's lazy ones included, done before the clock starts) that
computes the per-column sum, mean and max in one ``dask.compute`` (Dask's threaded scheduler
with its defaults), checked against their closed forms:

* LakeHub: ``lakehub.arrays.open(name, mode="r").to_dask()`` (the catalogue and the
  credentials are asked for inside the timed part);
* anchor: ``zarr.open_array("s3://<bucket>/arrays/<name>", mode="r", storage_options=...)``
  with the same user's keys, then ``dask.array.from_zarr``.

Runs alternate (which side goes first changes every round), after one untimed warm-up of each.
As root with the cgroup v1 memory controller, every run is held to ``--limit-gib`` GiB (the
kernel kills it beyond); the peak is reported. Throughput: the array's size in memory
(uncompressed) per second, GB = 10^9 bytes.

    .venv/bin/python bench/arrays.py [--runs 5] [--gib 3] [--limit-gib 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

ROWS_PER_CHUNK, COLS, M = 2**19, 8, 1_000_003  # a[i, j] = (i % M) * (j + 1)
CGROUP = Path("/sys/fs/cgroup/memory")

CHILD = r"""
import json, os, resource, sys, time
import dask, dask.array as da, httpcore, numpy as np, s3fs, zarr, zarr.storage
import lakehub, lakehub.client, lakehub.datasets
from lakehub import arrays
side, name, path = sys.argv[1:4]
t0 = time.perf_counter()
if side == "lakehub":
    client = lakehub.connect(os.environ["BENCH_URL"], os.environ["BENCH_TOKEN"])
    x = arrays.open(name, mode="r", client=client).to_dask()
else:
    opts = {"key": os.environ["BENCH_KEY"], "secret": os.environ["BENCH_SECRET"],
            "client_kwargs": {"endpoint_url": os.environ["BENCH_ENDPOINT"],
                              "region_name": "us-east-1"}}
    x = da.from_zarr(zarr.open_array(path, mode="r", storage_options=opts))
opened = time.perf_counter() - t0
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
sums, means, maxes = dask.compute(x.sum(axis=0), x.mean(axis=0), x.max(axis=0))
seconds = time.perf_counter() - t0
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "open_seconds": opened, "nbytes": x.nbytes,
                  "compute_cpu": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
                  "sums": sums.tolist(), "means": means.tolist(), "maxes": maxes.tolist(),
                  "maxrss": cpu1.ru_maxrss * 1024}))
"""


def expected(rows: int) -> dict[str, list[float]]:
    q, r = divmod(rows, M)
    base = q * M * (M - 1) // 2 + r * (r - 1) // 2
    top = M - 1 if q else r - 1
    sums = [float(base * (j + 1)) for j in range(COLS)]
    return {
        "sums": sums,
        "means": [s / rows for s in sums],
        "maxes": [float(top * (j + 1)) for j in range(COLS)],
    }


def run_child(
    side: str, name: str, path: str, env: dict[str, str], limit: int, timeout: float = 1800
) -> tuple[dict[str, Any], int | None]:
    """One run in a fresh process, in a memory group of its own when ``limit`` (bytes) and the
    cgroup v1 controller allow; returns its answer and the group's peak (None without one)."""
    argv = [sys.executable, "-c", CHILD, side, name, path]
    group = None
    if limit and os.geteuid() == 0 and (CGROUP / "memory.limit_in_bytes").exists():
        group = CGROUP / f"lakehub-bench-{secrets.token_hex(4)}"
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
        if (group / "memory.memsw.limit_in_bytes").exists():
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
    try:
        enter = None
        if group is not None:
            procs = group / "cgroup.procs"

            def enter() -> None:
                procs.write_text(str(os.getpid()))

        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=enter
        )  # noqa: PLW1509
        peak = int((group / "memory.max_usage_in_bytes").read_text()) if group else None
        if proc.returncode != 0:
            oom = (group / "memory.oom_control").read_text() if group else ""
            raise RuntimeError(
                f"{side} run failed ({proc.returncode}) {oom.split()[-2:]}: "
                f"{proc.stderr.strip()[-1500:]}"
            )
        return json.loads(proc.stdout.strip().splitlines()[-1]), peak
    finally:
        if group is not None:
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def write_array(
    url: str, token: str, name: str, chunks: int, compressors: Any = None
) -> tuple[str, float, int]:
    """The array, chunk by chunk; returns its path, the seconds it took and the bytes stored."""
    import numpy as np

    import lakehub
    from lakehub import arrays

    client = lakehub.connect(url, token)
    arr = arrays.create(
        name,
        shape=(0, COLS),
        dtype="float64",
        chunks=(ROWS_PER_CHUNK, COLS),
        compressors=compressors,
        client=client,
    )
    cols = np.arange(1, COLS + 1, dtype=np.float64)
    t0 = time.perf_counter()
    for k in range(chunks):
        i = np.arange(k * ROWS_PER_CHUNK, (k + 1) * ROWS_PER_CHUNK, dtype=np.int64) % M
        arr.append(i[:, None].astype(np.float64) * cols)
    seconds = time.perf_counter() - t0
    stored = client.lake.credentials().filesystem().du(arr.path, total=True)
    return arr.path, seconds, int(stored)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gib", type=float, default=3.0, help="the array's size in memory")
    ap.add_argument(
        "--limit-gib",
        type=float,
        default=1.0,
        help="memory limit of each run (root, cgroup v1); 0: none",
    )
    ap.add_argument(
        "--zarr-codec",
        action="store_true",
        help="write the array with Zarr's default codec (zstd), not LakeHub's",
    )
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("arrays")
    marker = str(root)
    hub = B.bench_hub(root)
    problems: list[str] = []
    chunks = max(1, round(args.gib * 2**30 / (ROWS_PER_CHUNK * COLS * 8)))
    rows = chunks * ROWS_PER_CHUNK
    want = expected(rows)
    limit = int(args.limit_gib * 2**30)
    res: dict[str, list[float]] = {
        k: []
        for k in (
            "lakehub",
            "anchor",
            "ratio",
            "load",
            "lakehub_open",
            "anchor_open",
            "lakehub_cpu",
            "anchor_cpu",
        )
    }
    peaks: dict[str, list[int]] = {"lakehub": [], "anchor": []}
    wrote = stored = 0.0
    try:
        print(
            f"arrays benchmark: {args.runs} runs per side over {rows * COLS * 8 / 2**30:.2f} "
            f"GiB ({chunks} chunks of 32 MiB), memory limit "
            f"{args.limit_gib:g} GiB, data in {root}",
            flush=True,
        )
        url, token = B.up_with_user(hub)
        path, wrote, stored_bytes = write_array(
            url, token, "benchbig", chunks, "auto" if args.zarr_codec else None
        )
        stored = stored_bytes
        print(
            f"  written with lakehub.arrays.append in {wrote:.1f} s "
            f"({rows * COLS * 8 / wrote / 1e6:.0f} MB/s), {stored_bytes / 2**20:.0f} MiB "
            f"stored ({'Zarr' if args.zarr_codec else 'LakeHub'}'s default codec)",
            flush=True,
        )
        import lakehub

        creds = lakehub.connect(url, token).lake.credentials()
        env = {
            **os.environ,
            "BENCH_MARK": marker,
            "BENCH_URL": url,
            "BENCH_TOKEN": token,
            "BENCH_ENDPOINT": creds.endpoint_url,
            "BENCH_KEY": creds.access_key_id,
            "BENCH_SECRET": creds.secret_access_key,
        }
        for side in ("lakehub", "anchor"):  # warm-up, not counted
            run_child(side, "benchbig", path, env, limit)
        for r in range(args.runs):
            order = ("lakehub", "anchor") if r % 2 == 0 else ("anchor", "lakehub")
            got: dict[str, float] = {}
            for side in order:
                out, peak = run_child(side, "benchbig", path, env, limit)
                for k in want:
                    if out[k] != want[k]:
                        problems.append(f"run {r + 1} {side}: {k} {out[k]} != {want[k]}")
                got[side] = out["nbytes"] / out["seconds"] / 1e9
                res[side].append(got[side])
                res[f"{side}_open"].append(out["open_seconds"])
                res[f"{side}_cpu"].append(out["compute_cpu"])
                peaks[side].append(peak if peak is not None else out["maxrss"])
            res["ratio"].append(got["lakehub"] / got["anchor"])
            res["load"].append(os.getloadavg()[0])
            print(
                f"  run {r + 1}/{args.runs} (load {res['load'][-1]:.2f}): LakeHub "
                f"{got['lakehub']:.3f} GB/s | anchor {got['anchor']:.3f} GB/s | ratio "
                f"{res['ratio'][-1]:.2f}x",
                flush=True,
            )
    finally:
        problems += B.hub_down(hub, root, args.keep)
    cols = ["median", "min", "max"]
    print()
    print("out-of-core reduction (per-column sum, mean, max in one dask.compute): GB/s")
    sl, sa = B.summary(res["lakehub"]), B.summary(res["anchor"])
    print(
        B.table(
            ["", "n", *cols],
            [
                [
                    "LakeHub: lakehub.arrays .to_dask()",
                    str(sl["n"]),
                    *(B.fmt(sl[c], digits=3) for c in cols),
                ],
                [
                    "anchor: zarr.open_array + da.from_zarr",
                    str(sa["n"]),
                    *(B.fmt(sa[c], digits=3) for c in cols),
                ],
                ["ratio LakeHub/anchor", "", *(B.fmt(B.ratio(sl[c], sa[c]), "x") for c in cols)],
            ],
        )
    )
    print(
        f"median of the per-round ratios: {B.fmt(B.summary(res['ratio'])['median'], 'x')} "
        f"(goal >= 0.9x); load average per round: "
        f"{', '.join(f'{x:.1f}' for x in res['load'])}"
    )
    print()
    print(
        "inside the timed part, medians: seconds to open (the hub's answers for LakeHub, the "
        "array's metadata for both) and CPU seconds of the reduction (less sensitive to load)"
    )
    print(
        B.table(
            ["", "open s", "reduction CPU s"],
            [
                [
                    label,
                    B.fmt(B.summary(res[f"{side}_open"])["median"]),
                    B.fmt(B.summary(res[f"{side}_cpu"])["median"], digits=1),
                ]
                for label, side in (("LakeHub", "lakehub"), ("anchor", "anchor"))
            ],
        )
    )
    kind = "cgroup peak" if limit and os.geteuid() == 0 and CGROUP.exists() else "peak RSS"
    print(
        f"memory ({kind}), largest of the runs: LakeHub "
        f"{max(peaks['lakehub'], default=0) / 2**20:.0f} MiB, anchor "
        f"{max(peaks['anchor'], default=0) / 2**20:.0f} MiB"
    )
    info["args"] = vars(args)
    total = B.print_footer(started, info, problems, "problems")
    B.write_results(
        "arrays",
        {
            "host": info,
            "results": res,
            "peaks": peaks,
            "write_seconds": wrote,
            "stored_bytes": stored,
            "total_seconds": total,
        },
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
