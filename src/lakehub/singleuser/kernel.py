"""A Jupyter kernel with a memory guard: ``python -m lakehub.singleuser.kernel -f CONNECTION_FILE``.

Same argv and behaviour as ``python -m ipykernel_launcher``, plus: when ``LAKEHUB_MEMORY_LIMIT``
(bytes; absent or 0: no guard) is set, the kernel's RLIMIT_DATA soft limit becomes that plus
:data:`HEADROOM`, so an allocation that can never fit fails inside the process: the cell gets a
``MemoryError`` and the kernel, with its variables, lives on. Without it the server's cgroup
(:mod:`lakehub.server.notebooks.limits`) SIGKILLs the whole kernel: "kernel died, restarting", state
lost. The cgroup stays the real limit; this only catches the obvious overshoot early.

Exact behaviour under the guard (``LAKEHUB_MEMORY_LIMIT=2GiB``, i.e. RLIMIT_DATA 3 GiB):

- ``bytearray(3 * 2**30)`` raises ``MemoryError`` with an explanation (a plain ``MemoryError``
  has no message; the kernel gives it one, and adds it as a note to those that have one, like
  numpy's ``Unable to allocate 3.00 GiB for an array ...``). pyarrow raises
  ``ArrowMemoryError`` (a ``MemoryError``), DuckDB ``duckdb.OutOfMemoryException``.
- polars (Rust) does not raise: an allocation failure aborts the kernel (SIGABRT), as a cgroup
  kill would; right at the limit a failed thread spawn even deadlocked polars (3 runs of 3 at
  a 1.25 GiB limit): one more reason for a generous headroom.
- Allocations smaller than that but beyond what the server has left are touched page by page
  and end in the cgroup's OOM kill, as without the guard.
- Child processes (``!pip``, a Spark JVM) inherit the limit. Only the soft limit is set: code
  that knows better may raise it up to the (untouched) hard limit.

Why RLIMIT_DATA and not RLIMIT_AS (Python 3.11.2, pandas 3.1.1, pyarrow 26.0.1, polars 2.1.0,
duckdb 2.0.0, numpy 2.4.6, ipykernel 7.4.0, 2 cores). One interpreter after importing all of
them and running small queries (1 M rows: pandas -> parquet -> pyarrow, polars group_by,
DuckDB SQL on the file and on a pandas frame):

=========================  ======  =======  ======  =======
MiB                        VmSize  VmData   VmRSS   threads
=========================  ======  =======  ======  =======
python, nothing imported       14        4       9        1
numpy, pandas, pyarrow        365      152     130        3
+ polars, duckdb              818      218     184        6
+ the small queries          2826     1506     421       28
same, 32-thread pools        3253     1933     428      149
ipykernel, idle               818      158      76       13
ipykernel + the above        2935     1611     446       40
=========================  ======  =======  ======  =======

The address space (RLIMIT_AS) is 6.7x what is resident: glibc reserves 64 MiB per malloc arena
(PROT_NONE), pyarrow's mimalloc a 1 GiB arena, every thread a stack. Under RLIMIT_AS the same
work failed at 2 GiB and at 2.5 GiB, not with a MemoryError but with "Fatal glibc error",
jemalloc thread-creation failures and Rust allocation aborts; it passed at 3 GiB, where
``java -version`` still fails (it runs under RLIMIT_DATA 3 GiB). RLIMIT_DATA counts only writable
private memory (mimalloc's arena and thread stacks, but not PROT_NONE reservations): the work
passed at 768 MiB, 1 GiB, 1.125 GiB and from 1.5 GiB up; at 1.25 GiB polars deadlocked and at
1.375 GiB DuckDB raised OutOfMemoryException (whether mimalloc's 1 GiB arena fits decides).
VmData exceeds the resident size by about 1.1 GiB here, plus ~3.4 MiB per thread on larger
machines, so the rule is limit + 1 GiB: 3 GiB for the smallest size (2 GiB), twice the 1.5 GiB
that work needs. A kernel that did all of the above may then allocate 1.4 GiB more before the
guard fires, about what its 2 GiB group has left (2 GiB - 0.45 GiB - ~0.1 GiB for the server).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

ENV = "LAKEHUB_MEMORY_LIMIT"
HEADROOM = 2**30  # writable memory reserved but never touched: see the measurements above


def memory_rlimit(limit: int) -> int | None:
    """The RLIMIT_DATA for a server size of ``limit`` bytes (None: no guard)."""
    return limit + HEADROOM if limit > 0 else None


def limit_from_env(environ: Mapping[str, str] = os.environ) -> int:
    """``LAKEHUB_MEMORY_LIMIT`` in bytes; 0 when absent, empty or not a number."""
    try:
        return max(0, int(environ.get(ENV) or 0))
    except ValueError:
        print(
            f"lakehub.singleuser.kernel: ignoring {ENV}={environ[ENV]!r} (not a number of bytes)",
            file=sys.stderr,
        )
        return 0


def apply_memory_limit(limit: int) -> int | None:
    """Lower this process's RLIMIT_DATA soft limit for a size of ``limit`` bytes (never raise
    it); returns the soft limit now in force, None when there is no guard."""
    import resource

    wanted = memory_rlimit(limit)
    if wanted is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft == resource.RLIM_INFINITY or wanted < soft:
        resource.setrlimit(resource.RLIMIT_DATA, (wanted, hard))
        return wanted
    return soft


def explain_memory_errors(shell: Any, limit: int) -> None:
    """Make a cell's ``MemoryError`` say what happened and what to do."""
    size = os.environ.get("LAKEHUB_SIZE")
    amount = f"{limit / 2**30:.1f} GiB" if limit >= 2**30 else f"{limit // 2**20} MiB"
    message = (
        f"the kernel refused an allocation that cannot fit: this notebook server "
        f"{f'(size {size}) ' if size else ''}has {amount} of memory for everything it "
        "runs. Free memory (del "
        "large objects, shut down other kernels), work on less data at a time, or start "
        "the server with a larger size."
    )

    def handler(
        shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
    ) -> None:
        if not value.args:
            value.args = (message,)
        elif message not in getattr(value, "__notes__", ()):
            value.add_note(message)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((MemoryError,), handler)


def main() -> None:
    """What ``python -m ipykernel_launcher`` does, with the guard applied first."""
    # as ipykernel_launcher: the working directory leaves sys.path while we import, so that a
    # notebook folder's resource.py cannot shadow the module (IPython puts it back)
    if sys.path and (sys.path[0] == "" or os.path.abspath(sys.path[0]) == os.getcwd()):
        del sys.path[0]
    limit = limit_from_env()
    apply_memory_limit(limit)
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize()  # type: ignore[no-untyped-call]
    if limit and getattr(app, "shell", None) is not None:
        explain_memory_errors(app.shell, limit)
    app.start()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
