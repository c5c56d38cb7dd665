"""A SeaweedFS cluster for the lake, on hosts an operator names: what each host runs.

LakeHub logs into no machine. For the hosts it is given it renders one folder per host, to be
copied there, and the command that host runs from inside that folder:

- the gateway host runs the master, the filer and the S3 gateway with its IAM API (one ``weed
  server`` without a volume server), with an operator identity of its own (``s3.json``);
- every volume host runs a volume server that registers with the master; the master keeps each
  volume on as many servers as ``replication`` says (``001``, the default: two servers of one
  rack; ``010``: two racks, a host's rack given as ``ADDRESS@RACK``). A new bucket starts with
  one volume (and its copies), as on one machine, not with seven;
- every process reads the same ``security.toml``: JWT signing keys, so the filer and the volume
  servers serve and store nothing without a token signed by the cluster, and mutual TLS on every
  gRPC port from one private CA, the certificate valid for every host's address;
- the hub is pointed at the gateway as an S3 service with an IAM API (``lake_backend =
  "s3-iam"``, docs/howto/lake-on-s3.md): the settings are in ``lakehub-lake.toml`` (mode 0600:
  it holds the operator's secret), to merge into the hub's ``lakehub.toml``.

``python -m lakehub.server.lake.cluster --gateway 10.0.0.1 --volume 10.0.0.2 --volume 10.0.0.3
--volume 10.0.0.4 --out cluster/`` writes the folders and prints each host's command.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lakehub.server.lake.seaweedfs import (
    OWNER_ACTIONS,
    local_sockets,
    make_tls,
    write_security,
)
from lakehub.server.vault import write_private

S3_PORT, MASTER_PORT, VOLUME_PORT = 8333, 9333, 8080
REPLICATIONS = ("000", "001", "010", "100", "002", "011", "020", "200")


@dataclass
class Host:
    address: str
    folder: Path  # what to copy to the host; the command runs from inside it
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return f"cd {shlex.quote(str(self.folder.name))} && {env + ' ' if env else ''}" + (
            shlex.join(self.argv)
        )


@dataclass
class Cluster:
    gateway: Host
    volumes: list[Host]
    settings: dict[str, str]  # the hub's lake settings (with the operator's secret)

    @property
    def hosts(self) -> list[Host]:
        return [self.gateway, *self.volumes]


def operator_identities(key: str, secret: str) -> bytes:
    """An S3 gateway's identity file (``-s3.config``) holding one administrator, the operator's:
    the account LakeHub's IAM route acts through."""
    operator = {
        "name": "operator",
        "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": list(OWNER_ACTIONS),
    }
    return json.dumps({"identities": [operator]}).encode()


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def render(
    gateway: str,
    volumes: Sequence[str],
    out: Path,
    replication: str = "001",
    weed: str = "weed",
    volume_size_mb: int = 1024,
) -> Cluster:
    """The folders under ``out`` (one per host, named by its address) and each host's command;
    ``volumes``: ``ADDRESS`` or ``ADDRESS@RACK``. Raises ``ValueError`` in one line."""
    if replication not in REPLICATIONS:
        raise ValueError(f"replication {replication!r}: one of {', '.join(REPLICATIONS)}")
    copies = 1 + sum(int(d) for d in replication)
    if copies > len(volumes):
        raise ValueError(f"replication {replication} keeps {copies} copies: name as many volumes")
    gw = _address(gateway)
    placed = [(_address(v.partition("@")[0]), v.partition("@")[2] or "rack1") for v in volumes]
    if len({a for a, _ in placed} | {gw}) != len(placed) + 1:
        raise ValueError("every host needs an address of its own")
    tls = out / "tls"
    make_tls(tls, (gw, *(a for a, _ in placed)))
    write_security(out, Path("tls"))  # one set of keys for the cluster; paths from a host's folder
    key, secret = "LHOP" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    hosts = []
    for address, rack in [(gw, ""), *placed]:
        folder = out / address
        (folder / "tls").mkdir(parents=True, exist_ok=True)
        for name in ("tls/ca.crt", "tls/lake.crt", "tls/lake.key", "security.toml"):
            write_private(folder / name, (out / name).read_bytes())
        common = [weed, "-logtostderr"]
        if address == gw:
            write_private(folder / "s3.json", operator_identities(key, secret))
            argv = [
                *common,
                "server",
                f"-ip={gw}",
                f"-ip.bind={gw}",
                "-dir=data",
                "-volume=false",
                f"-master.port={MASTER_PORT}",
                f"-master.defaultReplication={replication}",
                f"-master.volumeSizeLimitMB={volume_size_mb}",
                "-master.telemetry=false",
                "-filer",
                "-s3",
                f"-s3.port={S3_PORT}",
                "-s3.config=s3.json",
                "-s3.iam.readOnly=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                *local_sockets(Path("data")),
            ]
            # one volume per new bucket (and its copies), whatever the replication
            env = {f"WEED_MASTER_VOLUME_GROWTH_COPY_{n}": "1" for n in (1, 2, 3)}
            env["WEED_MASTER_VOLUME_GROWTH_COPY_OTHER"] = "1"
        else:
            argv = [
                *common,
                "volume",
                f"-ip={address}",
                f"-ip.bind={address}",
                f"-port={VOLUME_PORT}",
                f"-mserver={gw}:{MASTER_PORT}",
                "-dir=data",
                "-max=0",
                "-dataCenter=dc1",
                f"-rack={rack}",
            ]
            env = {}
        (folder / "data").mkdir(exist_ok=True)
        hosts.append(Host(address, folder, argv, env))
    settings = {
        "lake_backend": "s3-iam",
        "lake_endpoint_url": f"http://{gw}:{S3_PORT}",
        "lake_admin_key_id": key,
        "lake_admin_secret": secret,
    }
    toml = "".join(f'{k} = "{v}"\n' for k, v in settings.items())
    write_private(out / "lakehub-lake.toml", toml.encode())
    return Cluster(hosts[0], hosts[1:], settings)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateway", required=True, help="the address of the master/filer/S3 host")
    ap.add_argument("--volume", action="append", required=True, help="ADDRESS[@RACK], repeated")
    ap.add_argument("--replication", default="001")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        cluster = render(args.gateway, args.volume, args.out, args.replication)
    except ValueError as err:
        ap.exit(2, f"error: {err}\n")
    for host in cluster.hosts:
        print(f"# on {host.address}: copy {host.folder} there, then\n{host.command()}")
    print(f"# the hub: merge {args.out / 'lakehub-lake.toml'} into its lakehub.toml")


if __name__ == "__main__":
    main()
