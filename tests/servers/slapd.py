"""Start a real, throw-away OpenLDAP server (Debian's slapd) on loopback for tests.

Usage in a fixture::

    try:
        server = start_slapd(tmp_path)
    except RuntimeError as err:
        pytest.skip(str(err))
    yield server
    server.stop()

Needs the Debian packages ``slapd`` (see scripts/install-system-packages.sh test).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.hashed import hashed

SLAPD = Path("/usr/sbin/slapd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

BASE_DN = "dc=lakehub,dc=test"
PEOPLE_DN = f"ou=people,{BASE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PW = "admin-secret"

SLAPD_CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema

pidfile {run}/slapd.pid
argsfile {run}/slapd.args
modulepath {modules}
moduleload back_mdb

database mdb
maxsize 104857600
suffix "{base_dn}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {db}
index objectClass eq
index uid eq

access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by * read
"""


@dataclass
class SlapdServer:
    url: str
    base_dn: str
    people_dn: str
    root_dn: str
    root_pw: str
    process: subprocess.Popen[bytes] = field(repr=False)

    def _admin(self) -> ldap3.Connection:
        return ldap3.Connection(
            ldap3.Server(self.url, connect_timeout=5),
            user=self.root_dn,
            password=self.root_pw,
            auto_bind=True,
            receive_timeout=10,
        )

    def user_dn(self, uid: str) -> str:
        return f"uid={uid},{self.people_dn}"

    def add_user(self, uid: str, password: str, **attrs: str) -> str:
        """Add an inetOrgPerson ``uid=<uid>,ou=people,...`` with a salted-SHA password."""
        entry: dict[str, str] = {
            "cn": uid,
            "sn": uid,
            "uid": uid,
            "userPassword": hashed(ldap3.HASHED_SALTED_SHA, password),
            **attrs,
        }
        conn = self._admin()
        try:
            if not conn.add(self.user_dn(uid), ["inetOrgPerson"], entry):
                raise RuntimeError(f"ldap add of {uid!r} failed: {conn.result}")
        finally:
            conn.unbind()
        return self.user_dn(uid)

    def stop(self) -> None:
        _terminate(self.process)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"slapd exited with code {proc.returncode} during startup: {_tail(log)}"
            )
        try:  # listening yet? (ldap3 leaves the socket of a refused connection open)
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 1).close()
        except OSError as err:
            last_error = repr(err)
            time.sleep(0.05)
            continue
        try:
            conn = ldap3.Connection(
                ldap3.Server(url, connect_timeout=1),
                user=ROOT_DN,
                password=ROOT_PW,
                auto_bind=True,
                receive_timeout=2,
            )
            conn.unbind()
            return
        except LDAPException as err:
            last_error = repr(err)
        time.sleep(0.05)
    raise RuntimeError(
        f"slapd did not answer on {url} within {START_TIMEOUT_S:.0f}s "
        f"(last error: {last_error}): {_tail(log)}"
    )


def _create_base_entries(server: SlapdServer) -> None:
    try:
        conn = server._admin()
        try:
            for dn, classes, attrs in (
                (server.base_dn, ["dcObject", "organization"], {"dc": "lakehub", "o": "LakeHub"}),
                (server.people_dn, ["organizationalUnit"], {"ou": "people"}),
            ):
                if not conn.add(dn, classes, attrs):
                    raise RuntimeError(f"could not create {dn}: {conn.result}")
        finally:
            conn.unbind()
    except LDAPException as err:
        raise RuntimeError(f"could not create the base entries: {err!r}") from err


def start_slapd(tmp_dir: Path) -> SlapdServer:
    """Start slapd with a fresh mdb database under ``tmp_dir``; raise RuntimeError if impossible."""
    if not SLAPD.exists():
        raise RuntimeError(
            f"{SLAPD} not found: run scripts/install-system-packages.sh test (Debian package slapd)"
        )
    if not any(MODULE_DIR.glob("back_mdb*")):
        raise RuntimeError(f"slapd's back_mdb module not found in {MODULE_DIR}")

    root = Path(tmp_dir) / "slapd"
    shutil.rmtree(root, ignore_errors=True)
    (root / "db").mkdir(parents=True)
    conf = root / "slapd.conf"
    conf.write_text(
        SLAPD_CONF.format(
            schema=SCHEMA_DIR,
            run=root,
            modules=MODULE_DIR,
            base_dn=BASE_DN,
            root_dn=ROOT_DN,
            root_pw=ROOT_PW,
            db=root / "db",
        )
    )
    log = root / "slapd.log"

    # A free port can be taken between probing and binding; retry a couple of times.
    for attempt in range(3):
        port = _free_port()
        url = f"ldap://127.0.0.1:{port}"
        with log.open("wb") as log_fh:
            # "-d none" keeps slapd in the foreground and prints only unconditional
            # messages (errors, "bind failed", ...); "-d 0" would print nothing at all.
            proc = subprocess.Popen(
                [str(SLAPD), "-f", str(conf), "-h", f"{url}/", "-d", "none"],
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
            )
        server = SlapdServer(url, BASE_DN, PEOPLE_DN, ROOT_DN, ROOT_PW, proc)
        try:
            _wait_ready(proc, url, log)
            _create_base_entries(server)
            return server
        except BaseException as err:
            server.stop()
            if "Address already in use" in str(err) and attempt < 2:
                continue
            raise
    raise AssertionError("unreachable")
