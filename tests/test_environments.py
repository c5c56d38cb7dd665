"""Named environments, sizes, spawn options, policies and quotas, through the API, SDK and CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websocket import WebSocketTimeoutException

import lakehub
from conftest import Hub, shared_environments
from kernel import Kernel, tiny_wheel
from lakehub.client import Client, LakeHubError

# what each built-in must run, beyond the SDK and boto3
PROBES = {
    "minimal": "import json",
    # an out-of-core array written from one environment and reduced with Dask from the other
    "datascience": "import pandas, polars, pyarrow, sklearn, duckdb, matplotlib, lakehub.arrays\n"
    "a = lakehub.arrays.create('probe', shape=(0, 2), dtype='float64', chunks=(4, 2))\n"
    "a.append([[1, 2], [3, 4], [5, 6]])\nassert a[1:].sum() == 18, a[:]",
    "dask": "import dask.dataframe, distributed, dask_gateway, sklearn, lakehub.arrays\n"
    "assert lakehub.arrays.open('probe').to_dask().sum().compute() == 21",
    "spark": "import pyspark",
}


def sdk(hub: Hub, name: str) -> Client:
    return lakehub.connect(hub.url, hub.token(name))


def test_every_sdk_module_a_kernel_loads_is_part_of_the_build_identity() -> None:
    """Environments carry a copy of the SDK: a change to any module the SDK loads (arrays and
    compute included) must give a new build."""
    from lakehub.server.notebooks.environments import sdk_sources

    code = (
        "import json, sys, lakehub, lakehub.compute\n"
        "for m in lakehub._SUBMODULES: getattr(lakehub, m)\n"
        "print(json.dumps([m.__file__ for n, m in sys.modules.items()"
        " if n == 'lakehub' or n.startswith('lakehub.')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = {Path(p).resolve() for p in json.loads(out)}
    assert "arrays" in {p.parent.name for p in loaded}
    assert loaded <= {p.resolve() for p in sdk_sources()}


def test_each_builtin_environment_starts_a_server_with_its_own_kernel(hub: Hub, new_user) -> None:
    envs = hub.wait_environments(*PROBES)
    assert any(c.startswith("pandas==") for c in envs["datascience"]["contents"])
    assert any(h.startswith("scikit-learn ") for h in envs["datascience"]["highlights"])
    name = new_user("envs")
    bucket = f"{name}-home"
    with sdk(hub, name) as c:
        c.lake.credentials().boto3_client().put_object(Bucket=bucket, Key="in.txt", Body=b"lake")
        for env, probe in PROBES.items():
            server = c.servers.start(env, environment=env, size="small")
            assert (server["environment"], server["size"], server["ready"]) == (env, "small", True)
            k = Kernel(hub.url, name, hub.token(name), server=env)
            try:
                out, err = k.run(
                    f"{probe}\nimport os, sys, boto3, lakehub\n"
                    # compiled when built: a user's account cannot write __pycache__ there
                    "from importlib.util import cache_from_source as pyc\n"
                    "assert all(os.path.exists(pyc(m.__file__)) for m in (boto3, lakehub))\n"
                    # uv-overrides.txt: never installed (a second of CPU at each import)
                    "from importlib.util import find_spec\n"
                    "assert find_spec('rfc3987_syntax') is None\n"
                    f"print(sys.executable.split('/')[-3].rsplit('-', 1)[0])\n"
                    "print(os.environ['LAKEHUB_ENVIRONMENT'], os.environ['LAKEHUB_SIZE'])\n"
                    f"print(boto3.client('s3').get_object(Bucket='{bucket}', Key='in.txt')"
                    "['Body'].read().decode())\n",
                    timeout=180,
                )
            finally:
                k.close()
            assert err is None, (env, err)
            assert out.split() == [env, env, "small", "lake"], out
            c.servers.stop(env)
        hub.wait(lambda: not c.servers.list(), 60, "servers to stop")
    # nor in the servers' own environment, nor in the hub's
    server_python = shared_environments() / "default" / "bin" / "python"
    for python in (str(server_python), sys.executable):
        probe = "import importlib.util as u; print(u.find_spec('rfc3987_syntax'))"
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "None", python


def test_pip_install_user_persists_per_user_and_environment(hub: Hub, new_user) -> None:
    hub.wait_environments("minimal", "datascience")
    name = new_user("pip")
    wheel = base64.b64encode(tiny_wheel("lhtiny")).decode()
    with sdk(hub, name) as c:
        c.servers.start(environment="minimal")
        k = Kernel(hub.url, name, hub.token(name))
        try:
            out, err = k.run(
                "import base64, subprocess, sys\n"
                f"open('lhtiny-0.1-py3-none-any.whl', 'wb').write(base64.b64decode('{wheel}'))\n"
                "p = subprocess.run([sys.executable, '-m', 'pip', 'install', '--user',"
                " '--no-index', '--disable-pip-version-check', 'lhtiny-0.1-py3-none-any.whl'],"
                " capture_output=True, text=True)\n"
                "print(p.returncode, p.stderr[-500:])\n"
            )
        finally:
            k.close()
        assert err is None and out.startswith("0 "), (out, err)
        c.servers.stop()
        hub.wait(lambda: not c.servers.list(), 60, "the server to stop")
        # a new server of the same environment has it, from the user's home
        c.servers.start(environment="minimal")
        k = Kernel(hub.url, name, hub.token(name))
        try:
            out, err = k.run("import lhtiny; print(lhtiny.WHERE)")
        finally:
            k.close()
        assert err is None, err
        assert out.strip() == str(
            hub.data_dir
            / "homes"
            / name
            / ".local"
            / "lakehub"
            / "minimal"
            / "lib"
            / "python3.11"
            / "site-packages"
            / "lhtiny.py"
        )
        c.servers.stop()
        hub.wait(lambda: not c.servers.list(), 60, "the server to stop")
        # another environment does not see it
        c.servers.start(environment="datascience")
        k = Kernel(hub.url, name, hub.token(name))
        try:
            out, err = k.run("import lhtiny")
        finally:
            k.close()
        assert err is not None and err.startswith("ModuleNotFoundError"), (out, err)
        c.servers.stop()


def test_group_choices_and_quotas_refuse_spawns_clearly(hub: Hub, new_user) -> None:
    hub.wait_environments("minimal")
    a, b, outsider = new_user("qa"), new_user("qb"), new_user("qo")
    group = f"team{a[-6:]}"
    hub.cli("group", "create", group)
    for member in (a, b):
        hub.cli("group", "add", group, member)
    hub.cli(
        "policy",
        "set",
        "--group",
        group,
        "--environments",
        "minimal",
        "--sizes",
        "small",
        "--default-environment",
        "minimal",
        "--max-memory",
        "3GiB",
        "--idle-timeout",
        "120",
    )
    hub.cli("policy", "set", "--user", a, "--max-servers", "1")
    with sdk(hub, a) as ca, sdk(hub, b) as cb, sdk(hub, outsider) as co:
        opts = ca.servers.options()
        assert [e["name"] for e in opts["environments"]] == ["minimal"]
        assert [z["name"] for z in opts["sizes"]] == ["small"]
        assert (opts["default_environment"], opts["max_servers"], opts["idle_timeout"]) == (
            "minimal",
            1,
            120,
        )
        # someone outside the group keeps every choice
        every = {e["name"] for e in co.servers.options()["environments"]}
        assert {"datascience", "minimal"} <= every
        with pytest.raises(LakeHubError) as refused:
            ca.servers.start(environment="datascience")
        assert refused.value.status == 403 and "not one you may use" in refused.value.detail
        with pytest.raises(LakeHubError) as refused:
            ca.servers.start(size="large")
        assert refused.value.status == 403 and "size 'large'" in refused.value.detail
        first = ca.servers.start()  # the group's defaults
        assert (first["environment"], first["size"], first["idle_timeout"]) == (
            "minimal",
            "small",
            120,
        )
        with pytest.raises(LakeHubError) as refused:
            ca.servers.start("second")
        assert refused.value.status == 403
        assert "at most 1 server(s)" in refused.value.detail and "default" in refused.value.detail
        # the group's memory: 2 GiB in use of 3 GiB, so B's small server (2 GiB) is refused
        with pytest.raises(LakeHubError) as refused:
            cb.servers.start()
        assert refused.value.status == 403 and f"group {group!r}" in refused.value.detail
        assert "3.0 GiB" in refused.value.detail
        # the hub's own REST API goes through the same rules: the spawn fails with the reason
        with httpx.Client(
            base_url=hub.url, timeout=60, headers={"Authorization": f"token {hub.token(b)}"}
        ) as h:
            r = h.post(f"/hub/api/users/{b}/servers/direct", json={"size": "small"})
            assert r.status_code >= 400 and "memory quota" in r.text, r.text
            r = h.post(f"/hub/api/users/{b}/servers/odd", json={"env": {"X": "1"}})
            assert r.status_code >= 400 and "unknown server option" in r.text, r.text
        ca.servers.stop()
        hub.wait(lambda: not ca.servers.list(), 60, "the server to stop")
        assert cb.servers.start()["ready"]  # room again
        cb.servers.stop()
    hub.cli("policy", "rm", "--group", group)
    hub.cli("policy", "rm", "--user", a)


def test_only_administrators_change_environments_sizes_and_policies(hub: Hub, new_user) -> None:
    name = new_user("nadm")
    with hub.http(name) as c:
        api = "/services/lakehub/api"
        assert c.put(f"{api}/environments/mine", json={"packages": ["six"]}).status_code == 403
        assert c.post(f"{api}/environments/minimal/build").status_code == 403
        assert c.get(f"{api}/environments/minimal/log").status_code == 403
        assert c.delete(f"{api}/environments/minimal").status_code == 403
        assert c.put(f"{api}/sizes/huge", json={"cpus": 64, "memory": 2**40}).status_code == 403
        assert c.get(f"{api}/notebook-policies").status_code == 403
        r = c.put(f"{api}/notebook-policies/user/{name}", json={"max_servers": 50})
        assert r.status_code == 403
        # and nobody stops a server that is not theirs: the API only knows one's own
        assert c.delete(f"{api}/servers/default").status_code == 404


def test_admin_adds_an_environment_and_a_failed_build_keeps_the_previous(hub: Hub) -> None:
    env = "extra-six"
    r = hub.cli("environment", "set", env, "--description", "six on top", "-p", "six")
    assert "queued" in r.stdout or "building" in r.stdout
    envs = hub.wait_environments(env, timeout=300)
    assert envs[env]["usable"] and any(c.startswith("six==") for c in envs[env]["contents"])
    # a spec that cannot be built: the build fails, the previous build stays in use
    hub.cli("environment", "set", env, "-p", "six", "-p", "no-such-package-lakehub-test==9.9")
    with hub.admin_http() as c:
        failed = hub.wait(
            lambda: (e := c.get(f"/environments/{env}").json())["status"] == "failed" and e,
            300,
            "the build to fail",
        )
        assert failed["usable"] and "no-such-package-lakehub-test" in failed["error"]
        assert "no-such-package-lakehub-test" in c.get(f"/environments/{env}/log").text
        # bad specs are refused before any build
        for bad in (
            {"packages": ["git+https://example.invalid/x"]},
            {"python": "2.7"},
            {"packages": ["-e ."]},
        ):
            r = c.put(f"/environments/{env}", json=bad)
            assert r.status_code == 400, (bad, r.text)
        assert c.put("/environments/Bad_Name", json={}).status_code == 400
        assert c.delete("/environments/datascience").status_code == 409  # built in
        assert c.delete(f"/environments/{env}").status_code == 204
    r = hub.cli("environment", "show", env, check=False)
    assert r.returncode != 0 and "no environment named" in r.stderr and "Traceback" not in r.stderr


def test_a_size_limits_memory_and_cpu_and_says_why(hub: Hub, new_user) -> None:
    if not Path("/sys/fs/cgroup/memory").is_dir() or os.geteuid() != 0:
        pytest.skip("limits need root and cgroup memory/cpu controllers")
    hub.wait_environments("minimal")
    with hub.admin_http() as c:
        r = c.put("/sizes/tiny", json={"cpus": 0.5, "memory": 768 * 2**20, "description": "t"})
        assert r.status_code == 200, r.text
    name = new_user("lim")
    with sdk(hub, name) as c:
        server = c.servers.start(environment="minimal", size="tiny")
        assert server["limits"] == "enforced" and server["memory_kills"] == 0
        k = Kernel(hub.url, name, hub.token(name))
        try:
            # one allocation that can never fit: a MemoryError that says why, kernel alive
            out, err = k.run("x = bytearray(2 * 1024**3)")
            assert err is not None and err.startswith("MemoryError"), (out, err)
            assert "(size tiny) has 768 MiB" in err and "larger size" in err, err
            # half a CPU, however busy the kernel is
            out, err = k.run(
                "import time\nt, w = time.process_time(), time.monotonic()\n"
                "while time.monotonic() - w < 1.5: pass\n"
                "print(round((time.process_time() - t) / (time.monotonic() - w), 2))"
            )
            assert err is None and float(out) < 0.75, (out, err)
            # growing past the size, step by step (pages written, so resident): the kernel is
            # stopped by the group's limit before its own guard, the server stays
            k.ws.settimeout(20)
            with pytest.raises((AssertionError, WebSocketTimeoutException)):
                out, err = k.run(
                    "x = []\nfor i in range(40): x.append(b'1' * (50 * 2**20))", timeout=20
                )
                raise ValueError(f"the cell ended: {out!r} {err!r}")
        finally:
            k.ws.close()
        mine = hub.wait(
            lambda: (s := c.servers.list()[0])["memory_kills"] >= 1 and s,
            30,
            "the kill to be counted",
        )
        assert mine["ready"] and mine["memory_used"] is not None
        page = hub.browser_login(name).get("/services/lakehub/").text
        assert "memory limit (tiny) stopped" in page
        c.servers.stop()
        hub.wait(lambda: not c.servers.list(), 60, "the server to stop")
    with hub.admin_http() as c:
        assert c.delete("/sizes/tiny").status_code == 204


def test_a_hub_builds_another_environment_while_one_is_being_built_elsewhere(
    tmp_path: Path,
) -> None:
    """Hubs sharing an environments folder split the queued builds: one that finds a build in
    progress elsewhere takes the next one (and waits for, then reuses, the other)."""
    from lakehub.server.notebooks.environments import held_elsewhere

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True); time.sleep(60)",
            str(tmp_path / ".spark.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert held_elsewhere(tmp_path, "spark")
        assert not held_elsewhere(tmp_path, "dask")
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert not held_elsewhere(tmp_path, "spark")
