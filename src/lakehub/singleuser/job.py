"""One attempt of a job, in the job's environment, as its owner: ``python -m
lakehub.singleuser.job --kind notebook|script --code FILE``, in the attempt's folder, which holds
the code and ``parameters.json``.

With ``--cluster dask:N`` a Dask cluster of N workers is started for the run first (as its owner,
through the API, with the run's token), named in ``LAKEHUB_JOB_CLUSTER`` (``dask/<name>``) so
that ``lakehub.compute.dask()`` in the code connects to it, and stopped when the code has ended,
however it ended. A cluster that cannot start is the runner's failure (exit 3: retried).

A notebook runs with papermill (the parameters injected after the cell tagged ``parameters``)
and leaves ``output.ipynb``, executed as far as it got; a script runs as ``__main__`` with its
parameters in ``LAKEHUB_JOB_PARAMETERS`` (JSON; ``lakehub.jobs.parameters()`` reads them). The
exit code says how it ended (see :mod:`lakehub.server.jobs.base`): 0, 1 when the job's own code
raised, 3 when this runner could not run it; it is also written to ``result.json`` for a control
plane that did not start this process.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import traceback
from pathlib import Path

FAILED, BROKEN = 1, 3


def _notebook(code: Path, parameters: dict[str, object]) -> int:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(code),
            "output.ipynb",
            parameters=parameters,
            kernel_name="python3",
            language="python",  # the environments' kernel (notebooks may not say)
            progress_bar=False,
            log_output=True,
            cwd=str(code.parent),
        )
    except PapermillExecutionError as err:
        print(f"the notebook failed in cell {err.exec_count}: {err.ename}: {err.evalue}")
        return FAILED
    return 0


def _script(code: Path, parameters: dict[str, object]) -> int:
    os.environ["LAKEHUB_JOB_PARAMETERS"] = json.dumps(parameters)
    sys.argv = [str(code)]
    sys.path.insert(0, str(code.parent))
    try:
        runpy.run_path(str(code), run_name="__main__")
    except SystemExit as exit_:
        if exit_.code in (None, 0):
            return 0
        if not isinstance(exit_.code, int):
            print(exit_.code, file=sys.stderr)
        return FAILED
    except BaseException:  # the script's own failure, as Python prints it
        traceback.print_exc()
        return FAILED
    return 0


def _start_cluster(spec: str) -> tuple[str, str]:
    """``dask:N``: a cluster of N workers started for the run; (kind, name)."""
    from lakehub.client import default

    kind, _, workers = spec.partition(":")
    started = default().request("POST", f"/api/compute/{kind}", json={"workers": int(workers)})
    os.environ["LAKEHUB_JOB_CLUSTER"] = f"{kind}/{started['name']}"
    print(f"[LakeHub: a {kind} cluster of {workers} workers for this run: {started['name']}]")
    return kind, str(started["name"])


def _stop_cluster(kind: str, name: str) -> None:
    from lakehub.client import LakeHubError, default

    try:
        default().request("DELETE", f"/api/compute/{kind}/{name}")
    except LakeHubError as err:  # gone already (idle, or stopped by the code): nothing to stop
        print(f"[LakeHub: stopping the cluster {name}: {err}]", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lakehub.singleuser.job")
    p.add_argument("--kind", choices=("notebook", "script"), required=True)
    p.add_argument("--code", required=True)
    p.add_argument("--cluster", default="", help="dask:N, a cluster of N workers for the run")
    args = p.parse_args(argv)
    code = Path(args.code).resolve()
    cluster: tuple[str, str] | None = None
    try:
        parameters = json.loads(Path("parameters.json").read_text())
        if args.cluster:
            cluster = _start_cluster(args.cluster)
        run = _notebook if args.kind == "notebook" else _script
        exit_code = run(code, parameters)
    except Exception:  # the runner itself (papermill missing, no cluster, a bad notebook...)
        traceback.print_exc()
        exit_code = BROKEN
    finally:
        if cluster is not None:
            _stop_cluster(*cluster)
    sys.stdout.flush()
    sys.stderr.flush()
    Path("result.json").write_text(json.dumps({"exit": exit_code}))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
