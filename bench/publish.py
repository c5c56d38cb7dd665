"""Published notebooks: how long the render of a 5 MB and a 100 MB notebook takes and how much
memory it needs, beside plain nbconvert on the same notebook in the same run.

* **LakeHub**: ``python -m lakehub.server.publish.render SRC DEST``, the process the control
  plane runs for each published version (outputs cut and left out at the page's limits, nh3's
  cleaning, nbconvert's ``basic`` template).
* **Anchor**: ``python -m nbconvert --to html SRC`` (its default ``lab`` template, everything
  rendered, nothing cleaned), with the same interpreter.

Each notebook has code cells with a stream output and a PNG image of random bytes (the size of
real plots); the 100 MB one is above the page's limit (24 MB of outputs), so LakeHub renders a
part of it and says so. Wall time and the peak resident memory of each process (``wait4``),
``--runs`` times each, medians.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib as B


def make_notebook(path: Path, megabytes: int) -> int:
    rng = random.Random(megabytes)
    image = 48 * 1024  # bytes of PNG-like data per output, before base64
    cells = []
    for i in range((megabytes * 2**20) // (image * 4 // 3 + 2048)):
        png = base64.b64encode(rng.randbytes(image)).decode()
        cells.append(
            {
                "cell_type": "code",
                "id": f"c{i}",
                "metadata": {},
                "execution_count": i + 1,
                "source": f"plot(df.sample({i}))",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": f"row {i}: " + "x" * 1900},
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"image/png": png, "text/plain": "<Figure size 640x480>"},
                    },
                ],
            }
        )
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
    path.write_text(json.dumps(nb))
    return path.stat().st_size


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            f"{argv[2]} failed: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="5,100", help="notebook sizes in MB")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info: dict[str, Any] = B.host_info()
    info["other_load"] = B.other_load_note()
    results: dict[str, Any] = {"args": vars(args), "host": info, "sizes": {}}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lakehub-bench-publish-") as tmp:
        for mb in (int(x) for x in args.sizes.split(",")):
            src = Path(tmp) / f"nb{mb}.ipynb"
            size = make_notebook(src, mb)
            ours = [
                sys.executable,
                "-m",
                "lakehub.server.publish.render",
                str(src),
                str(Path(tmp) / f"nb{mb}.fragment.html"),
            ]
            plain = [
                sys.executable,
                "-m",
                "nbconvert",
                "--to",
                "html",
                "--log-level",
                "ERROR",
                "--output-dir",
                tmp,
                "--output",
                f"nb{mb}.plain",
                str(src),
            ]
            got: dict[str, list[tuple[float, float]]] = {"lakehub": [], "nbconvert": []}
            for _ in range(args.runs):  # interleaved: both see the same machine
                for label, argv in (("lakehub", ours), ("nbconvert", plain)):
                    try:
                        got[label].append(timed(argv))
                    except RuntimeError as err:
                        problems.append(f"{mb} MB, {label}: {err}")
            page = Path(tmp) / f"nb{mb}.fragment.html"
            plain_out = Path(tmp) / f"nb{mb}.plain.html"
            results["sizes"][mb] = {
                "notebook_bytes": size,
                "page_bytes": page.stat().st_size if page.exists() else None,
                "plain_bytes": plain_out.stat().st_size if plain_out.exists() else None,
                **got,
            }
            rows = []
            for label, name in (("lakehub", "LakeHub render"), ("nbconvert", "plain nbconvert")):
                walls = [w for w, _ in got[label]]
                rss = [m for _, m in got[label]]
                rows.append(
                    [
                        name,
                        B.fmt(B.percentile(walls, 0.5), " s"),
                        B.fmt(B.percentile(rss, 0.5), " MB", 0),
                        str(len(walls)),
                    ]
                )
            lw = B.percentile([w for w, _ in got["lakehub"]], 0.5)
            pw = B.percentile([w for w, _ in got["nbconvert"]], 0.5)
            lm = B.percentile([m for _, m in got["lakehub"]], 0.5)
            pm = B.percentile([m for _, m in got["nbconvert"]], 0.5)
            rows.append(
                [
                    "ratio LakeHub/anchor",
                    B.fmt(B.ratio(lw, pw), "x"),
                    B.fmt(B.ratio(lm, pm), "x"),
                    "",
                ]
            )
            r = results["sizes"][mb]
            ours_mb, plain_mb = ((r[k] or 0) / 2**20 for k in ("page_bytes", "plain_bytes"))
            print(
                f"\n{mb} MB notebook ({size / 2**20:.1f} MiB): LakeHub's page "
                f"{ours_mb:.1f} MiB, plain nbconvert's {plain_mb:.1f} MiB"
            )
            print(B.table(["", "median wall", "median peak RSS", "runs"], rows))
    path = B.write_results("publish", results)
    print(f"\nresults: {path}")
    B.print_footer(started, info, problems, "problems")


if __name__ == "__main__":
    main()
