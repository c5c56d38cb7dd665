"""`lakehub up | status | down`: components, health, restarts, clean errors, no orphans."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import lakehub
from conftest import Hub, free_port, hub_dir, shared_environments, stop_hub
from hubs import LAKEHUB
from kernel import Kernel, start_server, tiny_wheel


def test_front_door_serves_login_portal_and_api_docs(hub: Hub) -> None:
    with httpx.Client(base_url=hub.url, timeout=30) as c:
        assert c.get("/hub/login").status_code == 200
        assert c.get("/services/lakehub/api/health").json() == {"status": "ok"}
        spec = c.get("/services/lakehub/openapi.json").json()
        assert "/services/lakehub/api/lake/credentials" in spec["paths"]
        assert c.get("/services/lakehub/docs").status_code == 200
        # encoded characters in a path reach the server behind, which judges it (a file may be
        # named "50%.ipynb"); TRACE too (the API refuses it with the methods it takes)
        for odd in ("50%25", "a%2Fb", "a%3Fb", "a%23b"):
            r = c.get(f"/services/lakehub/api/nosuch/{odd}")
            assert r.status_code == 404 and "detail" in r.json(), (odd, r.text)
        r = c.request("TRACE", "/services/lakehub/api/health")
        assert r.status_code == 405 and "GET" in r.headers["allow"]
        # the portal asks a browser to log in through the hub
        r = c.get("/services/lakehub/", follow_redirects=False)
        assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]
    # the front door's own API lists every route (user names in them): the hub's password only;
    # its ping and its metrics (counts per answer, no route, no user) are open on loopback
    api = f"http://127.0.0.1:{hub.runtime()['ports']['proxy_api']}"
    token = hub.token("admin")
    wrong = base64.b64encode(b"lakehub:not-the-password").decode()
    for headers in ({}, {"Authorization": f"Bearer {token}"}, {"Authorization": f"Basic {wrong}"}):
        assert httpx.get(f"{api}/api/http/routers", headers=headers).status_code == 401
    assert httpx.get(f"{api}/ping").status_code == 200
    metrics = httpx.get(f"{api}/metrics").text
    assert "traefik_entrypoint_requests_total" in metrics
    assert "router=" not in metrics and "service=" not in metrics


def test_lake_needs_credentials(hub: Hub) -> None:
    s3 = hub.runtime()["ports"]["s3"]
    r = httpx.get(f"http://127.0.0.1:{s3}/admin-home/")
    assert r.status_code == 403  # anonymous access is refused


def test_dead_component_is_restarted_and_logged(hub: Hub) -> None:
    from lakehub.server.up import routed

    for name in ("api", "proxy"):
        before = hub.runtime()["components"][name]
        os.killpg(before["pid"], signal.SIGKILL)

        def restarted() -> bool:
            comp = hub.status()["components"][name]  # noqa: B023 (called in this round)
            return comp["restarts"] >= before["restarts"] + 1 and comp["healthy"]  # noqa: B023

        hub.wait(restarted, timeout=30, what=f"the {name} to come back")
        log = (hub.data_dir / "logs" / "supervisor.log").read_text()
        assert f"{name} exited with code" in log and "restarting in" in log
    # the front door came back with its routes (a file it reads), not waiting for the hub
    # to add them again (it checks them every 5 minutes)
    hub.wait(
        lambda: routed(f"{hub.url}/services/lakehub/api/health"),
        timeout=5,
        what="the control plane's route through the restarted front door",
    )


def _cullers(hub: Hub) -> list[int]:
    """This hub's idle culler processes."""
    marker = f"LAKEHUB_HUB_ID={hub.data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and b"lakehub.server.notebooks.culling" in (entry / "cmdline").read_bytes()
                and marker in (entry / "environ").read_bytes().split(b"\0")
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_killed_jupyterhub_leaves_no_culler_behind(hub: Hub) -> None:
    """The culler is JupyterHub's child: it goes with it, and the restarted hub starts one."""
    before = hub.wait(lambda: _cullers(hub), timeout=30, what="the idle culler")
    assert len(before) == 1, before
    restarts = hub.status()["components"]["hub"]["restarts"]
    os.kill(int((hub.data_dir / "run" / "jupyterhub.pid").read_text()), signal.SIGKILL)

    def new_culler() -> list[int] | None:
        comp = hub.status()["components"]["hub"]
        fresh = [p for p in _cullers(hub) if p not in before]
        return fresh if comp["restarts"] > restarts and comp["healthy"] and fresh else None

    fresh = hub.wait(new_culler, timeout=90, what="the hub back, with its culler")
    time.sleep(1)
    assert _cullers(hub) == fresh and len(fresh) == 1  # the old one went with its hub


def test_second_up_on_same_data_dir_is_refused(hub: Hub) -> None:
    proc = hub.cli("up", "--data-dir", str(hub.data_dir), "--port", str(free_port()), check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: a hub is already running on")
    assert "Traceback" not in proc.stderr
    assert hub.status()["state"] == "ready"


def test_port_in_use_is_refused(hub: Hub, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = hub.cli("up", "--data-dir", str(tmp_path / "d"), "--port", str(port), check=False)
    assert proc.returncode != 0
    assert f"port {port} for the front door is already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAKEHUB, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_missing_binary_and_bad_settings_are_one_line(hub: Hub, tmp_path: Path) -> None:
    env = {**hub.env, "LAKEHUB_LAKE_BINARY": "/nonexistent/weed"}
    proc = run(env, "up", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()))
    assert proc.returncode != 0
    assert proc.stderr.strip() == "error: the SeaweedFS binary /nonexistent/weed is missing"
    # found by the detached hub itself, after the checks: its reason, not its last log line
    env = {**hub.env, "LAKEHUB_NOTEBOOK_PYTHON": "/nonexistent/python3"}
    home = hub_dir()
    try:
        args = ("--data-dir", str(home / "data"), "--port", str(free_port()), "--detach")
        proc = run(env, "up", *args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "cannot build the notebook environment" in proc.stderr, proc.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
    proc = run({**hub.env, "LAKEHUB_PORT": "eighty"}, "status", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and "port" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "lakehub.toml").write_text("auth = 'kerberos'\n")
    proc = run(hub.env, "status", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and "auth" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "lakehub.toml").write_text("port = [\n")
    proc = run(hub.env, "status", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and "lakehub.toml" in proc.stderr and "Traceback" not in proc.stderr


def _descendants_alive(pids: list[int]) -> list[int]:
    return [
        p
        for p in pids
        if Path(f"/proc/{p}").exists()
        and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()
    ]


def tagged(data_dir: Path) -> list[int]:
    """Live processes carrying the hub's marker (zombies have no environment left to read)."""
    marker = f"LAKEHUB_HUB_ID={data_dir}".encode()
    out = []
    for e in Path("/proc").iterdir():
        if e.name.isdigit():
            try:
                if marker in (e / "environ").read_bytes().split(b"\0"):
                    out.append(int(e.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def life() -> Iterator[Hub]:
    """One hub of this module's own for the tests that stop, kill and start a whole hub; each
    test finds it in the state it needs (:func:`running` or :func:`stopped`), so a hub start
    serves two tests where it can."""
    h = Hub.create(hub_dir() / "data", {"LAKEHUB_ENVIRONMENTS_DIR": str(shared_environments())})
    yield h
    stop_hub(h)


def running(h: Hub) -> Hub:
    if h.cli("status", check=False).returncode != 0:
        h.up()
    return h


def stopped(h: Hub) -> Hub:
    if (h.data_dir / "run" / "runtime.json").exists():
        h.cli("down")
    return h


def test_sigterm_stops_a_foreground_hub(life: Hub) -> None:
    h = stopped(life)
    argv = [*LAKEHUB, "up", "--data-dir", str(h.data_dir), "--port", str(h.port)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=h.env, text=True
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 300
    with proc.stdout:
        for line in proc.stdout:
            lines.append(line)
            if "LakeHub is up" in line or time.monotonic() > deadline:
                break
        assert any("LakeHub is up" in ln for ln in lines), "".join(lines)
        assert not any(h.admin_password in ln for ln in lines)
        # ready: a login page and the API through the front door; the rest answers or is coming
        assert httpx.get(f"{h.url}/hub/login", timeout=10).status_code == 200
        assert httpx.get(f"{h.url}/services/lakehub/api/health", timeout=10).status_code == 200
        status = h.status()
        assert status["state"] == "ready", status
        assert {c["state"] for c in status["components"].values()} <= {"healthy", "starting"}
        # stopped while the others may still be starting: nothing stays
        pids = [c["pid"] for c in h.runtime()["components"].values()]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    time.sleep(0.2)
    assert _descendants_alive(pids) == []
    assert not (h.data_dir / "run" / "runtime.json").exists()


# A process of the hub that outlived it: it holds the front door's port and ignores SIGTERM.
HOLD_PORT = """
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(300)
"""


# The two below read a hub with the default settings (the workers' hubs run no metrics store):
# this module's own, started here for the test after them, which finds it running.
def test_status_reports_every_component(life: Hub) -> None:
    hub = running(life)
    hub.wait(lambda: hub.runtime().get("settled"), 120, "every component to answer")
    status = hub.status()
    assert status["running"] and status["state"] == "ready"
    assert set(status["components"]) == {
        *("lake", "proxy", "hub", "api", "warm", "gateway", "ingest", "metrics")
    }
    for name, comp in status["components"].items():
        assert comp["healthy"] is True, name
        assert Path(comp["log"]).exists(), name
    assert status["url"] == hub.url
    text = hub.cli("status").stdout
    assert "healthy" in text and "api" in text


def test_everything_listens_on_loopback_only(life: Hub) -> None:
    pids = {c["pid"] for c in running(life).runtime()["components"].values()}
    lines = (
        Path("/proc/net/tcp").read_text().splitlines()[1:]
        + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    )
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    listening = [ln.split() for ln in lines if ln.split()[3] == "0A" and ln.split()[9] in inodes]
    assert listening, "no listening sockets found"
    for row in listening:
        addr = row[1].split(":")[0]
        assert addr in ("0100007F", "00000000000000000000000001000000"), f"not loopback: {row[1]}"


def _leftover(h: Hub) -> subprocess.Popen[bytes]:
    env = {**h.env, "LAKEHUB_HUB_ID": str(h.data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, str(h.port)],
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    with proc.stdout:  # it prints once
        assert proc.stdout.readline() == b"listening\n"
    return proc


def test_a_killed_supervisor_takes_its_hub_along_and_up_starts_at_once(life: Hub) -> None:
    """A supervisor killed with SIGKILL takes every process of its hub along (a notebook
    server's too); what escaped is reported and stopped; the next ``up`` starts at once; and
    the user's files and ``pip install --user`` packages survive it all."""
    h = running(life)
    h.wait_environments("minimal")
    h.quick_user("keeper")
    keep_files(h)
    rt = h.runtime()
    pids = [c["pid"] for c in rt["components"].values()]
    before = tagged(h.data_dir)
    assert len(before) > len(pids), "a notebook server runs beside the components"
    os.kill(rt["supervisor_pid"], signal.SIGKILL)
    # the components, the notebook server and all the hub started go with the supervisor
    deadline = time.monotonic() + 30
    while tagged(h.data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:100] for p in tagged(h.data_dir)}
    assert left == {}, "processes outlived their supervisor"
    assert _descendants_alive(pids) == []
    status = h.status()
    assert status["state"] == "stopped" and not status["running"]
    assert status["leftovers"] == []

    # what escaped the hub's end is reported, not hidden behind "stopped"...
    holder = _leftover(h)
    status = h.status()
    assert status["state"] == "degraded" and not status["running"]
    assert status["leftovers"] == [holder.pid]
    assert status["reason"].startswith("supervisor not running, 1 leftover processes")
    text = h.cli("status", check=False)
    assert text.returncode == 1 and ": degraded: supervisor not running" in text.stdout
    # ...'lakehub down' stops it...
    out = h.cli("down").stdout
    assert "stopped 1 processes left by a hub whose supervisor had died" in out
    assert holder.wait(timeout=5) == -signal.SIGKILL
    # ...and so does the next 'lakehub up', which waits for the port and starts at once
    holder = _leftover(h)
    proc = h.cli("up", "--port", str(h.port), "--detach", check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert holder.wait(timeout=5) == -signal.SIGKILL
    h.wait(lambda: h.runtime().get("settled"), 120, "every component to answer")
    status = h.status()
    assert status["state"] == "ready"
    assert all(c["healthy"] for c in status["components"].values()), status
    # started niced so that JupyterHub comes first, the control plane then answers people at
    # the normal priority, above what runs in the background (the metrics store, builds)
    comps = status["components"]
    if os.geteuid() == 0:  # giving a priority back needs root
        assert _nices(comps["api"]["pid"]) == {0}
    assert _nices(comps["metrics"]["pid"]) == {10}
    with httpx.Client(base_url=h.url, timeout=30) as c:
        assert c.get("/hub/login").status_code == 200
    client = lakehub.connect(h.url, h.token("keeper"))
    assert client.servers.list() == []  # servers do not outlive the hub; files do
    client.servers.start(environment="minimal")
    k = Kernel(h.url, "keeper", h.token("keeper"))
    try:
        out, err = k.run("import lhkeep; print(open('notes.txt').read())")
    finally:
        k.close()
    assert (err, out.strip()) == (None, "kept")


def _nices(pid: int) -> set[int]:
    """The priorities of a process's threads."""
    return {
        os.getpriority(os.PRIO_PROCESS, int(t.name)) for t in Path(f"/proc/{pid}/task").iterdir()
    }


def keep_files(h: Hub) -> None:
    """keeper's server (the ``minimal`` environment) writes a file and installs a package with
    ``pip install --user``; the server runs on."""
    wheel = base64.b64encode(tiny_wheel("lhkeep")).decode()
    lakehub.connect(h.url, h.token("keeper")).servers.start(environment="minimal")
    k = Kernel(h.url, "keeper", h.token("keeper"))
    try:
        out, err = k.run(
            "import base64, subprocess, sys\n"
            "open('notes.txt', 'w').write('kept')\n"
            "open('lhkeep-0.1-py3-none-any.whl', 'wb')"
            f".write(base64.b64decode('{wheel}'))\n"
            "print(subprocess.run([sys.executable, '-m', 'pip', 'install', '--user', '-q',"
            " '--no-index', 'lhkeep-0.1-py3-none-any.whl']).returncode)\n"
        )
    finally:
        k.close()
    assert (err, out.strip()) == (None, "0")


def test_down_stops_everything_including_notebooks(life: Hub) -> None:
    h = running(life)
    h.add_user("carol")
    start_server(h.url, "carol", h.token("carol"))
    rt = h.runtime()
    pids = [c["pid"] for c in rt["components"].values()] + [rt["supervisor_pid"]]
    assert tagged(h.data_dir), "the notebook server should carry the hub's marker"
    proc = h.cli("down", check=False)
    assert proc.returncode == 0 and "stopped" in proc.stdout
    deadline = time.monotonic() + 10
    while (_descendants_alive(pids) or tagged(h.data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _descendants_alive(pids) == []
    assert tagged(h.data_dir) == []
    # the lake's local sockets were beside its data, none left in /tmp (weed never removes them)
    assert not list(Path("/tmp").glob(f"seaweedfs-*-{rt['ports']['s3']}.sock"))
    assert h.cli("status", check=False).returncode != 0
    assert "no hub is running" in h.cli("down").stdout


def test_ready_waits_for_a_direct_answer_not_a_redirect() -> None:
    """JupyterHub answers its health check before its services' routes reach the proxy; until
    then a service's URL is redirected by the hub. ``up`` counts a route only on a direct 200."""
    import http.server
    import threading

    from lakehub.server.up import routed

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            code = {"/ok": 200, "/moved": 302, "/sick": 503}[self.path]
            self.send_response(code)
            if code == 302:
                self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert routed(base + "/ok")
        assert not routed(base + "/moved")
        assert not routed(base + "/sick")
    finally:
        server.shutdown()
        server.server_close()
    assert not routed(base + "/ok", 0.5)  # nothing listens any more


def test_a_component_is_healthy_only_when_the_answer_is_its_own(tmp_path: Path) -> None:
    """Between choosing a port and binding it, another process may take the port. A component
    that then cannot bind it is not healthy because that other process answers."""
    from lakehub.server.supervisor import Component, Supervisor
    from lakehub.server.up import routed

    def serving(port: int) -> list[str]:
        return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]

    taken, own = free_port(), free_port()
    other = subprocess.Popen(serving(taken), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not routed(f"http://127.0.0.1:{taken}/", 0.5) and time.monotonic() < deadline:
        time.sleep(0.1)  # the other process holds the port before the component starts
    comps = [
        Component(
            "late",
            [sys.executable, "-c", "import time; time.sleep(60)"],
            tmp_path / "late.log",
            "",
            f"http://127.0.0.1:{taken}/",
        ),
        Component("own", serving(own), tmp_path / "own.log", "", f"http://127.0.0.1:{own}/"),
    ]
    sup = Supervisor(comps, lambda: None)
    try:
        sup.start_all()
        deadline = time.monotonic() + 60
        while not comps[1].healthy() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert comps[1].healthy()
        assert routed(f"http://127.0.0.1:{taken}/", 10)
        assert comps[0].proc is not None and comps[0].proc.poll() is None
        assert not comps[0].healthy()  # answered, but by another process
    finally:
        sup.stop_all(grace=5)
        other.kill()
        other.wait()


def test_hubs_starting_side_by_side_never_choose_the_same_port(tmp_path: Path) -> None:
    """A hub binds some ports only after its other components are healthy; another hub starting
    meanwhile must not choose them (seen: a lake never started, its filer port taken)."""
    from lakehub.server.config import load_settings
    from lakehub.server.runtime import CLAIM_SECONDS, CLAIMS, _claim, allocate

    settings = load_settings(
        data_dir=tmp_path / "d", lake_port=0, forward_port=0, ingest_http_port=0
    )
    first, second = allocate(settings).ports, allocate(settings).ports
    assert len(set(first.values())) == len(first)
    assert not set(first.values()) & set(second.values())
    for port in first.values():  # none bound yet, and yet none is anyone else's to take
        assert not _claim(port)
    stale = CLAIMS / str(first["filer"])
    old = time.time() - CLAIM_SECONDS - 1
    os.utime(stale, (old, old))
    assert _claim(first["filer"])  # a claim outlives no hub's start by more than ten minutes
