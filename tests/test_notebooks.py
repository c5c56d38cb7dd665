"""Notebook servers: lake access with no configuration, the SDK, per-user accounts, isolation."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import Hub, shared_environments
from kernel import Kernel, Terminal, start_server, stop_server

ROOT = os.geteuid() == 0


@pytest.fixture
def running(hub: Hub, new_user):
    """A user with a running server; stopped afterwards."""
    started: list[str] = []

    def make(prefix: str = "nb") -> str:
        name = new_user(prefix)
        start_server(hub.url, name, hub.token(name))
        started.append(name)
        return name

    yield make
    for name in started:
        stop_server(hub.url, name, hub.token(name))


def test_kernel_reads_and_writes_the_lake_with_no_arguments(hub: Hub, running) -> None:
    name = running()
    k = Kernel(hub.url, name, hub.token(name))
    try:
        out, err = k.run(
            "import os, boto3, pandas as pd, pyarrow.parquet as pq, s3fs, lakehub\n"
            f"b = '{name}-home'\n"
            "s3 = boto3.client('s3')\n"
            "s3.put_object(Bucket=b, Key='notes/hello.txt', Body=b'from the notebook')\n"
            "print(s3.get_object(Bucket=b, Key='notes/hello.txt')['Body'].read().decode())\n"
            "pd.DataFrame({'x': [1, 2, 3]}).to_parquet(f's3://{b}/t.parquet')\n"
            "print(int(pd.read_parquet(f's3://{b}/t.parquet').x.sum()))\n"
            "print(pq.read_table(f'{b}/t.parquet', filesystem=s3fs.S3FileSystem()).num_rows)\n"
            "c = lakehub.connect().lake.credentials()\n"
            "print(c.access_key_id == os.environ['AWS_ACCESS_KEY_ID'], c.bucket)\n"
            "print(os.environ['S3_ENDPOINT_URL'] == os.environ['AWS_ENDPOINT_URL'])\n"
        )
        assert err is None, err
        assert out.splitlines() == ["from the notebook", "6", "3", f"True {name}-home", "True"]
        # the catalog with no arguments: publish, find, query
        publish = (
            "frame = pd.DataFrame({'k': [1, 1, 2], 'v': [1, 2, 3]})\n"
            f"d = lakehub.datasets.create('nb_{name}', frame, partition_by=['k'])\n"
        )
        query = (
            "print(int(d.sql('select sum(v) as s from data where k = 1').s[0]),"
            " len(lakehub.datasets.get(d.name).to_polars()))\n"
        )
        out, err = k.run(publish + query)
    finally:
        k.close()
    assert err is None, err
    assert out.split() == ["3", "3"], out


def test_mlflow_autologs_and_registers_from_a_kernel_with_no_configuration(
    hub: Hub, running
) -> None:
    """``import mlflow; mlflow.sklearn.autolog(); model.fit(...)`` just works in a notebook,
    and the run is read from outside through the front door with the user's token."""
    name = running()
    k = Kernel(hub.url, name, hub.token(name))
    try:
        out, err = k.run(
            "import warnings; warnings.simplefilter('ignore')\n"
            "import mlflow\n"
            "from sklearn.datasets import load_iris\n"
            "from sklearn.tree import DecisionTreeClassifier\n"
            "x, y = load_iris(return_X_y=True)\n"
            "mlflow.set_experiment('iris')\n"
            "mlflow.sklearn.autolog(silent=True)\n"
            "with mlflow.start_run() as run:\n"
            "    DecisionTreeClassifier(max_depth=3).fit(x, y)\n"
            "v = mlflow.register_model(f'runs:/{run.info.run_id}/model', 'iris')\n"
            "mlflow.MlflowClient().set_registered_model_alias('iris', 'champion', v.version)\n"
            "m = mlflow.pyfunc.load_model('models:/iris@champion')\n"
            "print(run.info.run_id, int((m.predict(x) == y).sum()))\n",
            timeout=240,
        )
    finally:
        k.close()
    assert err is None, err
    # MLflow prints its links and (with tqdm in the environment) progress bars around it
    found = re.search(r"([0-9a-f]{32}) (\d+)\s*$", out)
    assert found is not None, out
    run_id, right = found.groups()
    assert int(right) > 140
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"{hub.url}/services/lakehub/mlflow")
    os.environ["MLFLOW_TRACKING_TOKEN"] = hub.token(name)
    try:
        run = client.get_run(run_id)
        assert run.info.user_id == name and run.data.params["max_depth"] == "3"
        assert run.data.tags["lakehub.environment"] == "datascience"
        assert run.data.tags["lakehub.environment.build"].startswith("datascience-")
        assert client.get_model_version_by_alias("iris", "champion").run_id == run_id
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


def test_servers_run_as_their_own_accounts(hub: Hub, running) -> None:
    if not ROOT:
        pytest.skip("per-user accounts need root; without it the hub warns that users share one")
    a, b = running("a"), running("b")
    ka, kb = Kernel(hub.url, a, hub.token(a)), Kernel(hub.url, b, hub.token(b))
    try:
        out, err = ka.run(
            "import os; open('private.txt','w').write('mine'); print(os.getuid(), os.getcwd())"
        )
        assert err is None, err
        uid, cwd = out.split()
        assert int(uid) == pwd.getpwnam(f"lh-{a}").pw_uid != 0
        assert cwd == str(hub.data_dir / "homes" / a)
        out, err = kb.run(f"print(open({cwd + '/private.txt'!r}).read())")
        assert err is not None and err.startswith("PermissionError"), (out, err)
        out, err = kb.run(f"import os; print(os.listdir({cwd!r}))")
        assert err is not None and err.startswith("PermissionError"), (out, err)
        # B cannot signal A's processes
        out, err = kb.run(
            "import os, signal, subprocess\n"
            f"pids = subprocess.run(['pgrep', '-u', 'lh-{a}'], capture_output=True,"
            " text=True).stdout.split()\n"
            "print(len(pids))\n"
            "os.kill(int(pids[0]), signal.SIGTERM)\n"
        )
        assert err is not None and err.startswith("PermissionError"), (out, err)
    finally:
        ka.close()
        kb.close()


def test_other_users_cannot_reach_a_server(hub: Hub, running, new_user) -> None:
    a = running("a")
    b = new_user("b")
    with httpx.Client(
        base_url=hub.url, timeout=30, headers={"Authorization": f"token {hub.token(b)}"}
    ) as c:
        assert c.get(f"/user/{a}/api/status").status_code == 403
        assert c.get(f"/user/{a}/api/contents").status_code == 403
        # JupyterHub answers 404 for users one may not see, so as not to reveal them
        assert c.post(f"/hub/api/users/{a}/server").status_code == 404
        assert c.delete(f"/hub/api/users/{a}/server").status_code == 404
    # and A's server still answers A
    with httpx.Client(
        base_url=hub.url, timeout=30, headers={"Authorization": f"token {hub.token(a)}"}
    ) as c:
        assert c.get(f"/user/{a}/api/status").status_code == 200


def test_a_server_that_died_gets_the_hubs_page_not_the_front_doors(hub: Hub, running) -> None:
    """Until JupyterHub notices, the dead server's route stays: the front door answers it with
    the hub's page for a server that is down, in LakeHub's look (Traefik's own is plain text)."""
    if not ROOT:
        pytest.skip("the server's processes are found by their account")
    name = running("gone")
    with httpx.Client(
        base_url=hub.url, timeout=30, headers={"Authorization": f"token {hub.token(name)}"}
    ) as c:
        assert c.get(f"/user/{name}/api/status").status_code == 200
        pids = subprocess.run(
            ["pgrep", "-u", f"lh-{name}"], capture_output=True, text=True
        ).stdout.split()
        assert pids
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        answer = c.get(f"/user/{name}/api/status")
    assert answer.status_code == 502, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    assert "Your server appears to be down" in answer.text
    assert "/services/lakehub/assets/lakehub.css" in answer.text  # LakeHub's look


def test_servers_inherit_no_hub_secrets(hub: Hub, running) -> None:
    name = running()
    k = Kernel(hub.url, name, hub.token(name))
    try:
        # the kernel's own environment and the server's initial one (/proc/PPID/environ)
        out, err = k.run(
            "import os\n"
            "try:\n"
            "    env = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode('utf8')\n"
            "except PermissionError:\n"
            "    env = 'unreadable'  # a process that changed account is not dumpable\n"
            "print(env.replace('\\0', '\\n'))\n"
            "print('\\n'.join(f'{k}={v}' for k, v in os.environ.items()))\n"
        )
    finally:
        k.close()
    assert err is None, err
    service_token = (hub.data_dir / "state" / "service.token").read_text().strip()
    assert hub.admin_password not in out
    assert service_token not in out
    assert "LAKEHUB_ADMIN_PASSWORD" not in out
    assert "AWS_SECRET_ACCESS_KEY=" in out  # the user's own key is meant to be there


def test_removing_a_user_removes_their_account_but_keeps_their_files(hub: Hub, new_user) -> None:
    if not ROOT:
        pytest.skip("per-user accounts need root")
    name = new_user("gone")
    start_server(hub.url, name, hub.token(name))
    assert pwd.getpwnam(f"lh-{name}")
    # a process of theirs that outlives the server (removal once failed on it, half done)
    k = Kernel(hub.url, name, hub.token(name))
    try:
        out, err = k.run(
            "import subprocess\n"
            "print(subprocess.Popen(['sleep', '600'], start_new_session=True).pid)\n"
        )
    finally:
        k.close()
    assert err is None, err
    pid = int(out.strip())
    hub.cli("user", "remove", name)
    with pytest.raises(KeyError):
        pwd.getpwnam(f"lh-{name}")
    hub.wait(lambda: not _running(pid), 10, "the user's last process to end")
    assert (hub.data_dir / "homes" / name).is_dir()
    with httpx.Client(base_url=hub.url, timeout=30) as c:
        assert c.get(f"/user/{name}/api/status").status_code != 200
    again = hub.cli("user", "remove", name, check=False)  # repeating it is safe and says why
    assert again.returncode == 1 and f"no user named '{name}'" in again.stderr, again.stderr


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_terminal_has_the_environment_and_lab_keeps_settings_in_the_home(hub: Hub, running) -> None:
    """A terminal, opened as JupyterLab opens it, finds the chosen environment's python, pip and
    the lakehub command; JupyterLab's settings and workspaces are written to the user's home and
    survive a restart of the server."""
    name = running("term")
    term = Terminal(hub.url, name, hub.token(name))
    try:
        out = term.run(
            'echo "PY=$(command -v python) PIP=$(command -v pip) LH=$(command -v lakehub)"; '
            "python -c 'import pandas; print(\"PANDAS\", 1 + 1)'; "
            "lakehub lake ls | sed 's/^/BUCKET=/'"
        )
    finally:
        term.close()
    found = dict(re.findall(r"(PY|PIP|LH)=(/\S+)", out))
    env_bin = os.path.realpath(shared_environments() / "datascience") + "/bin/"
    assert os.path.realpath(os.path.dirname(found.get("PY", "/none"))) + "/" == env_bin, out
    assert found.get("PIP", "").startswith(os.path.dirname(found["PY"])), out
    assert "LH" in found, out
    assert "PANDAS 2" in out, out
    assert f"BUCKET={name}-home" in out, out  # the lakehub command, as the user

    lab = f"{hub.url}/user/{name}/lab/api"
    headers = {"Authorization": f"token {hub.token(name)}"}
    theme = "@jupyterlab/apputils-extension:themes"
    with httpx.Client(headers=headers, timeout=60) as c:
        r = c.put(f"{lab}/settings/{theme}", json={"raw": '{"theme": "JupyterLab Dark"}'})
        assert r.status_code == 204, r.text
        r = c.put(
            f"{lab}/workspaces/mine",
            json={"data": {"layout-restorer:data": {}}, "metadata": {"id": "mine"}},
        )
        assert r.status_code == 204, r.text
    if ROOT:
        home = pwd.getpwnam(f"lh-{name}").pw_dir
        assert os.path.exists(f"{home}/.jupyter/lab/workspaces")
        assert os.path.exists(
            f"{home}/.jupyter/lab/user-settings/@jupyterlab/apputils-extension"
            "/themes.jupyterlab-settings"
        )
    stop_server(hub.url, name, hub.token(name))
    start_server(hub.url, name, hub.token(name))
    with httpx.Client(headers=headers, timeout=60) as c:
        assert "JupyterLab Dark" in c.get(f"{lab}/settings/{theme}").json()["raw"]
        assert c.get(f"{lab}/workspaces/mine").json()["metadata"]["id"] == "mine"


def test_no_route_leaves_a_secret_in_jupyterhubs_database(hub: Hub, new_user) -> None:
    """Server options are checked before JupyterHub stores them; variables typed anywhere are
    kept by the control plane, never in JupyterHub's database or its API answers."""
    import sqlite3

    name = new_user("opt")
    secret = f"sekrit-{name}"
    headers = {"Authorization": f"token {hub.token(name)}"}
    env = {"S3_KEY": {"value": secret + "-api", "secret": True}}
    with httpx.Client(base_url=f"{hub.url}/hub/api", headers=headers, timeout=60) as c:
        r = c.post(f"/users/{name}/server", json={"environment": "minimal", "env": env})
        assert r.status_code == 400 and "unknown server option 'env'" in r.text, r.text
        assert "lakehub env set" in r.text  # where variables go instead
        r = c.put(f"/users/{name}/servers/later", json={"user_options": {"env": env}})
        assert r.status_code == 400 and "unknown server option" in r.text, r.text
        r = c.post(f"/users/{name}/servers/my exp", json={})
        assert r.status_code == 400 and "invalid server name 'my exp'" in r.text, r.text
        r = c.post(f"/users/{name}/server", json={"size": 3})
        assert r.status_code == 400 and "must be a name" in r.text, r.text
    # LakeHub's own API: the variable is saved as the user's (encrypted), the server starts
    with hub.http(name) as c:
        r = c.post(
            "/services/lakehub/api/servers",
            json={
                "name": "viaapi",
                "environment": "datascience",
                "env": {"TOKEN_X": env["S3_KEY"]},
            },
        )
        assert r.status_code in (201, 202), r.text
    # the hub's spawn form, as a browser posts it
    browser = hub.browser_login(name)
    r = browser.post(
        f"/hub/spawn/{name}/viaform",
        data={
            "environment": "datascience",
            "var_name": "FORM_X",
            "var_value": secret + "-form",
            "var_kind": "secret",
            "_xsrf": browser.cookies.get("_xsrf", ""),
        },
    )
    assert r.status_code == 200, r.text[:500]
    try:
        with httpx.Client(base_url=f"{hub.url}/hub/api", headers=headers, timeout=60) as c:
            model = c.get(f"/users/{name}", params={"include_stopped_servers": 1}).text
            assert secret not in model
            assert {"viaapi", "viaform"} <= set(c.get(f"/users/{name}").json()["servers"])
        db = sqlite3.connect(hub.data_dir / "state" / "jupyterhub.sqlite")
        try:
            stored = " ".join(str(row) for row in db.execute("select user_options from spawners"))
        finally:
            db.close()
        assert secret not in stored and "S3_KEY" not in stored
        with hub.http(name) as c:  # where the variables went: the user's own, values hidden
            names = {v["name"]: v for v in c.get("/services/lakehub/api/env").json()}
            assert names["TOKEN_X"]["secret"] and names["FORM_X"]["secret"]
            assert secret not in c.get("/services/lakehub/api/env").text
    finally:
        with httpx.Client(base_url=f"{hub.url}/hub/api", headers=headers, timeout=60) as c:
            for server in ("viaapi", "viaform"):
                c.delete(f"/users/{name}/servers/{server}")
