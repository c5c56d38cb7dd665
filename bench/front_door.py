"""The front door: what the proxy in front of everything adds, against the path without it.

One hub (``lakehub up``), and Debian's ``wrk`` against ``GET /services/lakehub/api/health``
(the control plane's cheapest answer) at c=1 and c=16 (threads = min(c, 2)), ``--seconds``
each, ``--runs`` rounds, the sides taking turns within a round:

* **direct**, the anchor: the control plane's own port, no proxy;
* **LakeHub**: the hub's front door (Traefik, ``lakehub.server.front_door``);
* **configurable-http-proxy 0.4** (the Python one, LakeHub's front door before Traefik),
  started here with the same command line ``lakehub up`` gave it, its default target the
  control plane: the same topology;
* **configurable-http-proxy 5 (Node)**, with ``--node-chp PATH`` (its binary, from
  ``npm install configurable-http-proxy@5``; not installed by the README's commands).

Printed: req/s and p50 per side and concurrency (medians over runs), each side's req/s as a
ratio of the direct path's and the p50 it adds. Goal (issue 20): >= 0.8x the direct path and
<= 0.3 ms added at p50. Results in ``bench/results/front_door.json``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import benchlib as B  # noqa: E402

PATH = "/services/lakehub/api/health"
CONCURRENCY = (1, 16)


def chp(binary: str, target: str, log: Path, marker: dict[str, str]) -> tuple[Any, str]:
    """A configurable-http-proxy on free ports sending everything to ``target``; its URL."""
    port, api = B.free_port(), B.free_port()
    argv = [binary, "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1"]
    argv += ["--api-port", str(api), "--default-target", target]
    env = {**os.environ, **marker, "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)}
    proc = subprocess.Popen(  # noqa: S603
        argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    if not B.wait_until(lambda: B.http_status(url + PATH) == 200, 30):
        raise RuntimeError(f"{binary} did not answer: see {log}")
    return proc, url


def wrk(binary: str, url: str, c: int, seconds: int) -> dict[str, Any]:
    cmd = [binary, f"-t{min(c, 2)}", f"-c{c}", f"-d{seconds}s", "--latency", url + PATH]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    return B.parse_wrk(done.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--node-chp", help="the Node configurable-http-proxy's binary, to compare")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = ap.parse_args()
    started = time.perf_counter()
    B.install_sigterm()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    wrk_bin = B.wrk_binary()
    root = B.bench_root("front-door")
    hub = B.bench_hub(root)
    marker = {"BENCH_MARK": str(root)}
    procs: list[Any] = []
    problems: list[str] = []
    results: dict[str, dict[int, list[dict[str, Any]]]] = {}
    try:
        hub.up(timeout=900)
        direct = f"http://127.0.0.1:{hub.runtime()['ports']['api']}"
        sides = {"direct": direct, "LakeHub (Traefik)": hub.url}
        py_chp = shutil.which("configurable-http-proxy", path=str(Path(sys.executable).parent))
        for name, binary in (("CHP 0.4 (Python)", py_chp), ("CHP 5 (Node)", args.node_chp)):
            if binary:
                proc, url = chp(binary, direct, root / f"{name.split()[1]}.log", marker)
                procs.append(proc)
                sides[name] = url
        for name, url in sides.items():  # every side answers before anything is timed
            if B.http_status(url + PATH) != 200:
                raise RuntimeError(f"{name} does not answer {PATH} at {url}")
        for r in range(args.runs):
            for c in CONCURRENCY:
                for name, url in sides.items():
                    got = wrk(wrk_bin, url, c, args.seconds)
                    results.setdefault(name, {}).setdefault(c, []).append(got)
                    if got["errors"]:
                        problems.append(f"{name} c={c} run {r + 1}: {got['errors']} errors")
    finally:
        B.kill_groups(procs)
        problems += B.hub_down(hub, root, args.keep)
    rows = []
    base = {c: results["direct"][c] for c in CONCURRENCY}
    for name, by_c in results.items():
        for c in CONCURRENCY:
            rps = statistics.median([x["rps"] for x in by_c[c]])
            p50 = statistics.median([x["p50_ms"] for x in by_c[c]])
            d_rps = statistics.median([x["rps"] for x in base[c]])
            d_p50 = statistics.median([x["p50_ms"] for x in base[c]])
            added = "" if name == "direct" else f"{p50 - d_p50:+.3f} ms"
            rows.append(
                [name, str(c), f"{rps:,.0f}", f"{rps / d_rps:.2f}x", f"{p50:.3f} ms", added]
            )
    print(f"\nGET {PATH}, wrk, median of {args.runs} runs of {args.seconds} s per side")
    print(B.table(["side", "c", "req/s", "of direct", "p50", "p50 added"], rows))
    print("goal: LakeHub >= 0.80x of direct, <= +0.300 ms at p50")
    B.write_results("front_door", {"host": info, "args": vars(args), "results": results})
    B.print_footer(started, info, problems, "problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
