"""Benchmark: building the ``datascience`` environment from a warm package cache, LakeHub against
the same build done by hand with uv, in one run.

LakeHub: one hub from ``lakehub up --detach``. Its control plane builds every named environment
in the background; the benchmark waits (not timed) until none is queued or building, so the
package cache holds everything ``datascience`` needs. Each LakeHub run then sends
``POST /services/lakehub/api/environments/datascience/build`` with the service token (the request
``lakehub environment build datascience`` sends) and polls ``GET .../environments/datascience``
every 0.2 s until its status is ``ready`` with a new ``built_at``: what an administrator sees.
The spec does not change, so the build has the same hash every time; ``build_named`` then builds
into a directory of its own (``envs/datascience-<hash>-<suffix>``; the running build stays for
servers using it) and makes it from nothing (venv, install, kernel spec, freeze, import check),
so every run is a full build. The benchmark checks that: after each run ``envs/datascience``
points at a new directory without the file it put into the previous one, and the build's log
shows the ``uv pip install``.

Anchor, by hand: ``uv venv --system-site-packages --python PY DIR`` then
``uv pip install --offline --python DIR/bin/python <the spec's packages> ipykernel pip <SDK>``
into a fresh directory: the same uv binary, interpreter (both read from LakeHub's build log),
package list (the spec from the API, the kernel packages and the SDK's source path, checked
against LakeHub's install command) and package cache (uv's default, as the hub's). LakeHub's
build tries ``--offline`` first and goes online only if that fails; the anchor does the same, so
neither side asks the package index when the cache has everything (each run records whether it
had to). After each anchor run (not timed) ``uv pip freeze`` checks that it installed the same
packages as LakeHub's build.

LakeHub and anchor runs alternate (which goes first alternates too), so a change in machine load
hits both alike. Sizes on disk are measured after the last run.

    .venv/bin/python bench/environments.py [--runs 5] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

ENV = "datascience"
POLL = 0.2
SETUP_TIMEOUT = 1800.0  # lakehub up plus the first build of every environment, cold cache
BUILD_TIMEOUT = 1200.0


class LakeHub:
    label = "LakeHub"

    def __init__(self, root: Path) -> None:
        self.hub = B.bench_hub(root, "lakehub/data")
        self.data = self.hub.data_dir
        self.http: httpx.Client | None = None

    def start(self) -> float:
        t0 = time.perf_counter()
        self.hub.up(timeout=900)
        self.http = self.hub.admin_http()
        return time.perf_counter() - t0

    def api(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def env_model(self) -> dict[str, Any]:
        r = self.api().get(f"/environments/{ENV}")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def wait_settled(self, timeout: float) -> float:
        """Wait until every environment has a usable build and none is queued or building."""
        t0 = time.perf_counter()
        seen: dict[str, str] = {}
        while time.perf_counter() - t0 < timeout:
            envs = self.api().get("/environments").json()
            for e in envs:
                state = f"{e['status']}{': ' + e['progress'] if e['progress'] else ''}"
                if seen.get(e["name"]) != state:
                    seen[e["name"]] = state
                    print(
                        f"    {time.perf_counter() - t0:6.0f} s  {e['name']}: {state}", flush=True
                    )
                if e["status"] == "failed" and not e["usable"]:
                    tail = self.api().get(f"/environments/{e['name']}/log").text[-1500:]
                    raise RuntimeError(f"environment {e['name']} failed to build:\n{tail}")
            if all(e["usable"] and e["status"] not in ("queued", "building") for e in envs):
                return time.perf_counter() - t0
            time.sleep(0.5)
        raise RuntimeError(f"environments not settled after {timeout:.0f} s: {seen}")

    def build_dir(self) -> Path:
        return (self.data / "envs" / ENV).resolve()

    def rebuild(self) -> dict[str, Any]:
        """Ask for a rebuild and wait until it is ready; the times at which each step showed."""
        before = self.env_model()
        # a file of our own in the current build must not be in the next one
        old_dir = self.build_dir()
        sentinel = old_dir / ".bench-sentinel"
        sentinel.write_text("removed by a full rebuild\n")
        r: dict[str, Any] = {"ok": False, "steps": {}}
        t0 = time.perf_counter()
        resp = self.api().post(f"/environments/{ENV}/build")
        r["post_seconds"] = time.perf_counter() - t0
        if resp.status_code != 200:
            r["error"] = f"POST {resp.status_code}: {resp.text[:300]}"
            return r
        last = ""
        while time.perf_counter() - t0 < BUILD_TIMEOUT:
            m = self.env_model()
            now = time.perf_counter() - t0
            state = m["status"] if m["status"] != "building" else f"building: {m['progress']}"
            if state != last:
                r["steps"].setdefault(state, now)
                last = state
            if m["status"] == "failed":
                r["error"] = f"build failed: {m['error'][-500:]}"
                return r
            if m["status"] == "ready" and m["built_at"] != before["built_at"]:
                r["seconds"] = now
                r["ok"] = True
                break
            time.sleep(POLL)
        else:
            r["error"] = f"not ready after {BUILD_TIMEOUT:.0f} s"
            return r
        new_dir = self.build_dir()
        r["rebuilt"] = (
            new_dir != old_dir
            and not (new_dir / sentinel.name).exists()
            and (new_dir / "bin" / "python").exists()
        )
        log = (self.data / "envs" / f"{ENV}.log").read_text(errors="replace")
        r["log_installs"] = len(re.findall(r"^\$ \S+ pip install ", log, re.M))
        r["online"] = r["log_installs"] > 1  # the --offline attempt failed, went to the index
        r["contents"] = m["contents"]
        return r


def commands_from_log(log: str) -> tuple[str, str, list[str]]:
    """uv, the interpreter and the install arguments (packages and SDK) of LakeHub's build."""
    venv = re.search(r"^\$ (\S+) venv .*--python (\S+) ", log, re.M)
    install = re.search(r"^\$ \S+ pip install --python \S+ (.*?)(?: --offline)?$", log, re.M)
    if not venv or not install:
        raise RuntimeError(f"cannot read the build's commands from its log:\n{log[-1500:]}")
    return venv.group(1), venv.group(2), shlex.split(install.group(1))


def anchor_build(uv: str, python: str, packages: list[str], target: Path) -> dict[str, Any]:
    """uv venv + uv pip install into ``target``, as by hand; the same fallback as LakeHub's."""
    r: dict[str, Any] = {"ok": False, "steps": {}, "online": False}
    env_python = str(target / "bin" / "python")
    t0 = time.perf_counter()
    venv = subprocess.run(
        [uv, "venv", "--system-site-packages", "--python", python, str(target)],
        capture_output=True,
        text=True,
    )
    r["steps"]["uv venv"] = time.perf_counter() - t0
    if venv.returncode != 0:
        r["error"] = f"uv venv: {venv.stderr.strip()[-500:]}"
        return r
    t1 = time.perf_counter()
    install = [uv, "pip", "install", "--python", env_python, *packages]
    proc = subprocess.run([*install, "--offline"], capture_output=True, text=True)
    if proc.returncode != 0:
        r["online"] = True
        proc = subprocess.run(install, capture_output=True, text=True)
    r["steps"]["uv pip install"] = time.perf_counter() - t1
    r["seconds"] = time.perf_counter() - t0
    if proc.returncode != 0:
        r["error"] = f"uv pip install: {proc.stderr.strip()[-500:]}"
        return r
    r["ok"] = True
    frozen = subprocess.run(  # not timed
        [uv, "pip", "freeze", "--python", env_python], capture_output=True, text=True
    ).stdout
    r["contents"] = [line for line in frozen.splitlines() if "==" in line]
    return r


def disk_usage(path: Path) -> dict[str, float]:
    """Files, apparent bytes and allocated bytes (each inode once, like du), and the allocated
    bytes of files not hard-linked anywhere else (what the tree adds beside uv's cache)."""
    seen: set[int] = set()
    files = apparent = allocated = own = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            allocated += st.st_blocks * 512
            if st.st_nlink == 1 or stat.S_ISDIR(st.st_mode):
                own += st.st_blocks * 512
            if name in filenames:
                files += 1
                apparent += st.st_size
    return {"files": files, "apparent": apparent, "allocated": allocated, "own": own}


def first_build_seconds(data: Path, built_at: str | None) -> float | None:
    """The setup's first build of ``ENV``: from the log's header to the recorded built_at."""
    head = (data / "envs" / f"{ENV}.log").read_text(errors="replace").splitlines()[:1]
    m = re.match(r"# build of \S+ at (\S+?)Z?$", head[0]) if head else None
    if not m or not built_at:
        return None
    start = datetime.fromisoformat(m.group(1)).replace(tzinfo=None)
    end = datetime.fromisoformat(built_at).replace(tzinfo=None)  # both UTC
    return (end - start).total_seconds()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="builds per side (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("environments")
    marker = str(root)
    lake = LakeHub(root)
    results: dict[str, Any] = {
        "benchmark": "environments",
        "environment": ENV,
        "host": info,
        "runs": args.runs,
        "root": str(root),
    }
    lake_runs: list[dict[str, Any]] = []
    anchor_runs: list[dict[str, Any]] = []
    sizes: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    same_command = same_packages = False
    anchor_contents: list[str] = []
    try:
        print(f"environment build benchmark: {ENV}, {args.runs} builds per side, in {root}")
        results["lakehub_up_seconds"] = lake.start()
        print(f"  lakehub up: {results['lakehub_up_seconds']:.1f} s", flush=True)
        print("  waiting for the first builds of all environments (warms the cache):", flush=True)
        results["settle_seconds"] = lake.wait_settled(SETUP_TIMEOUT)
        model = lake.env_model()
        results["first_build_seconds"] = first_build_seconds(lake.data, model["built_at"])
        log = (lake.data / "envs" / f"{ENV}.log").read_text(errors="replace")
        uv, python, logged = commands_from_log(log)
        from lakehub.server.notebooks.environments import project_root
        from lakehub.server.notebooks.specs import KERNEL_PACKAGES

        packages = [*model["packages"], *KERNEL_PACKAGES, str(project_root())]
        same_command = packages == logged
        if not same_command:
            problems.append(f"package list {packages} differs from LakeHub's install {logged}")
        results.update(uv=uv, python=python, packages=packages)
        print(f"  packages: {' '.join(packages)}", flush=True)
        for i in range(args.runs):
            line = []
            for side in ("LakeHub", "anchor") if i % 2 == 0 else ("anchor", "LakeHub"):
                if side == "LakeHub":
                    r = lake.rebuild()
                    lake_runs.append(r)
                    if r["ok"] and not r["rebuilt"]:
                        problems.append(f"LakeHub run {i + 1}: the build directory was not remade")
                    if r["ok"] and not r["log_installs"]:
                        problems.append(f"LakeHub run {i + 1}: no 'uv pip install' in the log")
                else:
                    target = root / "anchor" / f"run-{i + 1}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    r = anchor_build(uv, python, packages, target)
                    anchor_runs.append(r)
                    if i == args.runs - 1:
                        sizes["anchor"] = disk_usage(target)
                        anchor_contents = r.get("contents", [])
                    shutil.rmtree(target, ignore_errors=True)
                if not r["ok"]:
                    problems.append(f"{side} run {i + 1}: {r.get('error')}")
                online = " (went online)" if r.get("online") else ""
                line.append(f"{side} {B.fmt(r.get('seconds'))} s{online}")
            print(f"  run {i + 1}/{args.runs}: " + "   ".join(sorted(line)), flush=True)
        sizes["LakeHub"] = disk_usage(lake.build_dir())
        lake_contents = lake_runs[-1].get("contents", [])
        same_packages = bool(lake_contents) and sorted(lake_contents) == sorted(anchor_contents)
        if not same_packages:
            only_lake = sorted(set(lake_contents) - set(anchor_contents))
            only_anchor = sorted(set(anchor_contents) - set(lake_contents))
            problems.append(
                f"installed packages differ: LakeHub only {only_lake}, anchor only {only_anchor}"
            )
    finally:
        if lake.http is not None:
            lake.http.close()
        if (lake.data / "run" / "runtime.json").exists():
            problems += lake.hub.down()
        problems += [f"leftover process: {p}" for p in B.reap(marker, wait=15)]
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    def secs(runs: list[dict[str, Any]]) -> list[float]:
        return [r["seconds"] for r in runs if r["ok"]]

    cols = ["median", "min", "max"]
    print()
    print(f"build of {ENV!r} from a warm package cache (seconds)")
    rows = B.stats_rows(
        "LakeHub: rebuild request -> status ready",
        secs(lake_runs),
        "anchor: uv venv + uv pip install",
        secs(anchor_runs),
        cols,
    )
    print(B.table(["", "n", *cols], rows))

    def step_medians(runs: list[dict[str, Any]]) -> list[tuple[str, float]]:
        keys: list[str] = []
        for r in runs:
            keys += [k for k in r["steps"] if k not in keys]
        medians = [(k, B.summary([r["steps"][k] for r in runs if k in r["steps"]])) for k in keys]
        return sorted(((k, v["median"]) for k, v in medians), key=lambda kv: kv[1])

    print()
    print("LakeHub: median seconds after the request at which the status first showed")
    print(
        B.table(
            ["status (polled every 0.2 s)", "seconds"],
            [[k, B.fmt(v)] for k, v in step_medians([r for r in lake_runs if r["ok"]])],
        )
    )
    print(
        "(starting -> 1/4: the interpreter check and hashing the spec with the SDK source;"
        "\n 3/4: kernel spec; 4/4 -> ready: uv pip freeze, an import check, recording the build)"
    )
    print("anchor: median seconds per step (into a fresh directory; removing it is not timed)")
    print(
        B.table(
            ["step", "seconds"],
            [[k, B.fmt(v)] for k, v in step_medians([r for r in anchor_runs if r["ok"]])],
        )
    )
    print()
    mib = 2**20
    print("size on disk after the last run (MiB; uv hard-links installed files to its cache)")
    print(
        B.table(
            ["", "files", "apparent", "allocated (du)", "not shared with the cache"],
            [
                [
                    k,
                    str(v["files"]),
                    B.fmt(v["apparent"] / mib, digits=0),
                    B.fmt(v["allocated"] / mib, digits=0),
                    B.fmt(v["own"] / mib, digits=1),
                ]
                for k, v in sizes.items()
            ],
        )
    )
    print()
    rebuilt = sum(1 for r in lake_runs if r.get("rebuilt"))
    print(
        f"every LakeHub run a full build (new build directory, install in its log): "
        f"{rebuilt}/{len(lake_runs)}; went online: LakeHub "
        f"{sum(1 for r in lake_runs if r.get('online'))}, anchor "
        f"{sum(1 for r in anchor_runs if r.get('online'))}"
    )
    print(
        f"same install command as LakeHub's log: {'yes' if same_command else 'NO'}; "
        f"same packages installed (uv pip freeze): {'yes' if same_packages else 'NO'}"
    )
    print(
        f"setup (not timed): lakehub up {B.fmt(results.get('lakehub_up_seconds'), ' s', 1)}, "
        f"all environments built {B.fmt(results.get('settle_seconds'), ' s', 0)} later; "
        f"first build of {ENV} {B.fmt(results.get('first_build_seconds'), ' s', 1)}"
    )
    total = B.print_footer(started, info, problems, "problems")
    lh, an = B.summary(secs(lake_runs)), B.summary(secs(anchor_runs))
    results.update(
        lakehub=lake_runs,
        anchor=anchor_runs,
        sizes=sizes,
        problems=problems,
        summary={"lakehub": lh, "anchor": an, "ratio_median": B.ratio(lh["median"], an["median"])},
        total_seconds=total,
    )
    for r in lake_runs + anchor_runs:
        r.pop("contents", None)
    path = B.write_results("environments", results)
    print(f"results: {path}")
    return 0 if secs(lake_runs) and secs(anchor_runs) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
