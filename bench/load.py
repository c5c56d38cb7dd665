"""Benchmark: many users on one hub at once, LakeHub against plain JupyterHub and a bare lake.

``--users`` simulated users (default 50), one thread each, all at once, each doing ``--rounds``
rounds (default 3) of five actions, each timed from request to answer:

  login    JupyterHub's login form as a browser (GET /hub/login, POST with the password and
           next=/hub/home), following redirects to the page it lands on;
  list     ListObjectsV2 of their bucket with their own lake keys (a notebook's lake client);
  dataset  the first 20 rows of a dataset of their own (LakeHub: GET /api/datasets/NAME/preview,
           which reads the Parquet file with the user's keys);
  server   start a notebook server (environment ``minimal``, size ``small``) until it answers
           through the front door, then stop it until it is gone (bench/spawn.py's steps);
  ingest   100 NDJSON records POSTed to the HTTP receiver with their source's token (LakeHub
           only: it acknowledges them once they are on disk).

Anchors, in the same run: plain JupyterHub 6.1 (bench/spawn.py's: the dummy authenticator,
``SimpleLocalProcessSpawner`` launching the same JupyterLab of LakeHub's ``minimal`` build) for
login and server, and a bare SeaweedFS (``weed mini`` with an operator key, no per-user
identities; ``tests/hubs.py`` ``S3Service``) for list and dataset (GET of the same Parquet file
and pyarrow reading its first 20 rows). No anchor for ingest. Rounds alternate which side goes
first; within a round every user runs at once on one side, then on the other.

Reported per action and side: count, errors, p50, p99, max (seconds) and actions/s over the
round's wall time. Every error is printed (an error: an exception or a status >= 400).

    .venv/bin/python bench/load.py [--users 50] [--rounds 3] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
import spawn as S  # noqa: E402

ENV, SIZE, RECORDS = "minimal", "small", 100
ACTIONS = ("login", "list", "dataset", "server", "ingest")


def parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(1000)), "value": [i * 0.5 for i in range(1000)]})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def login(front: str, name: str, password: str) -> None:
    with httpx.Client(base_url=front, follow_redirects=True, timeout=120) as c:
        c.get("/hub/login").raise_for_status()
        r = c.post(  # to the hub's home page: no server started on the way
            "/hub/login?next=/hub/home",
            data={"username": name, "password": password, "_xsrf": c.cookies.get("_xsrf", "")},
        )
        r.raise_for_status()


def preview_anchor(s3: Any, bucket: str) -> None:
    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=bucket, Key="data/part-0.parquet")["Body"].read()
    pq.read_table(io.BytesIO(body)).slice(0, 20).to_pylist()


class Side:
    """One side's users and what each action does for a user."""

    def __init__(self, label: str, actions: dict[str, Callable[[str], None]]) -> None:
        self.label, self.actions = label, actions
        self.times: dict[str, list[float]] = {a: [] for a in actions}
        self.errors: dict[str, list[str]] = {a: [] for a in actions}
        self.walls: list[float] = []

    def user(self, name: str) -> None:
        for action, do in self.actions.items():
            t0 = time.perf_counter()
            try:
                do(name)
            except Exception as err:  # noqa: BLE001 (every failure is counted and printed)
                self.errors[action].append(f"{name}: {type(err).__name__}: {str(err)[:200]}")
            else:
                self.times[action].append(time.perf_counter() - t0)

    def round(self, users: list[str]) -> float:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(users)) as pool:
            list(pool.map(self.user, users))
        self.walls.append(time.perf_counter() - t0)
        return self.walls[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("load")
    marker = str(root)
    lake = S.LakeHub(root)
    plain: S.PlainHub | None = None
    bare = B.S3Service(root / "bare")
    users = [f"load{i:02d}{secrets.token_hex(2)}" for i in range(args.users)]
    problems: list[str] = []
    sides: list[Side] = []
    try:
        print(f"load benchmark: {args.users} users at once, {args.rounds} rounds, in {root}")
        lake.start()
        lake.wait_environments([ENV], S.ENVIRONMENTS_TIMEOUT)
        hub = lake.hub
        builds = {ENV: str((lake.envs() / ENV).resolve())}
        plain = S.PlainHub(root, marker, (lake.envs() / "default").resolve(), builds, ENV)
        plain.start()
        bare.start()
        body = parquet_bytes()
        bare_s3 = B.s3_for(bare.admin(), max_pool_connections=args.users)
        creds, sources, datasets = {}, {}, {}
        ingest_url = f"http://127.0.0.1:{hub.runtime()['ports']['ingest_http']}"
        t0 = time.perf_counter()
        for name in users:  # not timed: accounts, data, a dataset and a stream each
            lake.add_user(name)
            plain.add_user(name)
            creds[name] = hub.credentials(name)
            B.s3_for(creds[name]).put_object(
                Bucket=f"{name}-home", Key="data/part-0.parquet", Body=body
            )
            bare_s3.create_bucket(Bucket=f"{name}-home")
            bare_s3.put_object(Bucket=f"{name}-home", Key="data/part-0.parquet", Body=body)
            with hub.http(name) as c:
                r = c.post(
                    f"{B.API}/datasets",
                    json={"name": "mine", "format": "parquet", "path": f"s3://{name}-home/data/"},
                )
                assert r.status_code == 201, r.text
                datasets[name] = r.json()["name"]
                r = c.post(f"{B.API}/streams", json={"name": "events", "tags": [f"{name}.*"]})
                assert r.status_code == 201, r.text
                r = c.post(f"{B.API}/sources", json={"name": "events", "tags": [f"{name}.*"]})
                assert r.status_code == 201, r.text
                sources[name] = r.json()["token"]
        print(
            f"  {args.users} users with data, a dataset and a stream each: "
            f"{time.perf_counter() - t0:.0f} s (not timed)"
        )
        lake_s3 = {n: B.s3_for(creds[n]) for n in users}
        records = "".join(json.dumps({"n": i, "pad": "x" * 100}) + "\n" for i in range(RECORDS))

        def server(hub_side: S.Hub, options: dict[str, str]) -> Callable[[str], None]:
            def run(name: str) -> None:
                done = hub_side.spawn(name, options)
                if not done["ok"]:
                    raise RuntimeError(done.get("error"))
                if not hub_side.stop(name)["ok"]:
                    raise RuntimeError("the server did not stop")

            return run

        def preview(name: str) -> None:
            with httpx.Client(
                base_url=hub.url, timeout=120, headers={"Authorization": f"token {hub.token(name)}"}
            ) as c:
                r = c.get(f"{B.API}/datasets/{datasets[name]}/preview")
                r.raise_for_status()
                assert len(r.json()["rows"]) == 20, r.text[:200]

        def ingest(name: str) -> None:
            r = httpx.post(
                f"{ingest_url}/{name}.load",
                content=records.encode(),
                timeout=120,
                headers={
                    "Authorization": f"Bearer {sources[name]}",
                    "Content-Type": "application/x-ndjson",
                },
            )
            r.raise_for_status()

        sides = [
            Side(
                "LakeHub",
                {
                    "login": lambda n: login(hub.url, n, hub.passwords[n]),
                    "list": lambda n: lake_s3[n].list_objects_v2(Bucket=f"{n}-home"),
                    "dataset": preview,
                    "server": server(lake, {"environment": ENV, "size": SIZE}),
                    "ingest": ingest,
                },
            ),
            Side(
                "anchor: plain JupyterHub + bare SeaweedFS",
                {
                    "login": lambda n: login(plain.front, n, "any"),
                    "list": lambda n: bare_s3.list_objects_v2(Bucket=f"{n}-home"),
                    "dataset": lambda n: preview_anchor(bare_s3, f"{n}-home"),
                    "server": server(plain, {"environment": ENV}),
                },
            ),
        ]
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                wall = side.round(users)
                errors = sum(len(e) for e in side.errors.values())
                print(
                    f"  round {r + 1}/{args.rounds} {side.label}: {wall:.1f} s, "
                    f"{errors} errors so far (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    finally:
        problems += lake.close()
        if plain is not None:
            plain.close()
        bare.stop()
        problems += B.reap(marker, wait=5)
        problems += B.remove_accounts(root)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    summary: dict[str, Any] = {}
    rows = []
    for action in ACTIONS:
        for side in sides:
            if action not in side.times:
                continue
            xs, errs = side.times[action], side.errors[action]
            s = B.summary(xs) if xs else {}
            rate = len(xs) / sum(side.walls) if side.walls else 0.0
            p99 = B.percentile(xs, 0.99) if xs else None
            summary.setdefault(action, {})[side.label] = {
                **s,
                "p99": p99,
                "errors": len(errs),
                "per_s": rate,
            }
            rows.append(
                [
                    action,
                    side.label,
                    str(len(xs)),
                    str(len(errs)),
                    B.fmt(B.percentile(xs, 0.5) if xs else None, " s"),
                    B.fmt(B.percentile(xs, 0.99) if xs else None, " s"),
                    B.fmt(max(xs) if xs else None, " s"),
                    f"{rate:.1f}",
                ]
            )
    print()
    print(B.table(["action", "side", "n", "errors", "p50", "p99", "max", "per s"], rows))
    for side in sides:
        for action, errs in side.errors.items():
            for e in errs[:5]:
                print(f"  error ({side.label}, {action}): {e}")
    print("per s: completed actions over the side's summed round walls (all users at once).")
    total = B.print_footer(started, info, problems, "leftover processes")
    path = B.write_results(
        "load",
        {
            "benchmark": "load",
            "host": info,
            "args": vars(args),
            "summary": summary,
            "problems": problems,
            "total_seconds": total,
        },
    )
    print(f"results: {path}")
    failed = any(side.errors[a] for side in sides[:1] for a in side.errors)
    return 1 if failed or problems or not sides else 0


if __name__ == "__main__":
    sys.exit(main())
