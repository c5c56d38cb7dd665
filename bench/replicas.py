"""Benchmark: a model replica's start, forked from the environment's warm starter against a plain
process of the same environment, in one run.

One scikit-learn iris model (a DecisionTreeClassifier saved with ``mlflow.sklearn``); LakeHub's
replica runner (``LocalRunner``) starts one replica of it in the ``datascience`` environment and
the time runs until its ``/v2/health/ready`` answers 200 (polled every 10 ms); then the replica's
CPU seconds until then (user + system, from /proc). The two ways take turns, ``--runs`` times
each; each replica is stopped before the next starts. The warm starter's own start (once per
environment, when the first replica of it starts) is reported apart.

    .venv/bin/python bench/replicas.py [--runs 10] [--envs DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402


def environment(envs: Path) -> Path:
    """The ``datascience`` environment in ``envs``, built there if it is not yet."""
    from lakehub.server.config import Settings
    from lakehub.server.notebooks import environments as build
    from lakehub.server.notebooks.specs import BUILTIN_ENVIRONMENTS

    spec = next(s for s in BUILTIN_ENVIRONMENTS if s.name == "datascience")
    python = build.interpreter_for(spec.python, Settings.model_fields["notebook_python"].default)
    if build.reuse(envs, spec.name, python, spec.packages) is None:
        print(f"building the datascience environment in {envs} (once)", flush=True)
        build.build_named(envs, spec.name, python, spec.packages, envs / "ds.log", print)
    return envs / "datascience" / "bin" / "python"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--envs", type=Path, default=Path("/var/tmp/lakehub-bench/envs"))
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    args.envs.mkdir(parents=True, exist_ok=True, mode=0o755)
    python = environment(args.envs)
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    from lakehub.server.config import Settings
    from lakehub.server.serving.base import ReplicaSpec
    from lakehub.server.serving.local import LocalRunner

    root = Path(tempfile.mkdtemp(prefix="lakehub-bench-replicas-"))
    os.chmod(root, 0o755)  # noqa: S103 (the replicas' account reads the model below it)
    settings = Settings(data_dir=root / "data", isolate_users=False)  # no account to leave
    x, y = load_iris(return_X_y=True)
    model = root / "model"
    tree = DecisionTreeClassifier(random_state=0).fit(x, y)
    mlflow.sklearn.save_model(tree, str(model), serialization_format="cloudpickle")
    runners = {"warm": LocalRunner(settings), "plain": LocalRunner(settings, warm=False)}
    took: dict[str, list[float]] = {"warm": [], "plain": []}
    cpu: dict[str, list[float]] = {"warm": [], "plain": []}
    problems: list[str] = []
    try:
        t0 = time.perf_counter()
        if runners["warm"]._starter(python) is None:
            sys.exit(f"the warm starter did not start: see {settings.log_dir}/serving/warm.log")
        starter_s = time.perf_counter() - t0
        print(f"the warm starter of datascience ready in {starter_s:.2f} s (once)", flush=True)
        for i in range(args.runs):
            for way in ("warm", "plain") if i % 2 == 0 else ("plain", "warm"):
                files = root / f"{way}-{i}"
                shutil.copytree(model, files)
                spec = ReplicaSpec(f"bench-{way}-{i}", "root", python, files, "iris", 1, 1.0, 2**30)
                t0 = time.perf_counter()
                replica = runners[way].start(spec)
                url = f"http://{replica.host}:{replica.port}/v2/health/ready"
                headers = {"X-LakeHub-Replica-Key": replica.secret}
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or not runners[way].alive(replica):
                        problems.append(f"{way} {i}: {runners[way].why(replica)}")
                        break
                    time.sleep(0.01)
                took[way].append(time.perf_counter() - t0)
                cpu[way].append(cpu_seconds(replica.pid))
                runners[way].stop(replica, 2.0)
                print(f"  run {i + 1} {way}: {took[way][-1]:.2f} s, {cpu[way][-1]:.2f} CPU-s")
    finally:
        for runner in runners.values():
            runner.close()
        shutil.rmtree(root, ignore_errors=True)
    cols = ["median", "min", "max"]
    for title, got in (("A replica's start to ready (s)", took), ("Its CPU seconds", cpu)):
        rows = B.stats_rows("forked, warm", got["warm"], "plain process", got["plain"], cols)
        print(f"\n{title}\n{B.table(['', 'n', *cols], rows)}")
    B.write_results("replicas", {"host": info, "ready_s": took, "cpu_s": cpu, "starter": starter_s})
    B.print_footer(started, info, problems, "problems")


if __name__ == "__main__":
    main()
