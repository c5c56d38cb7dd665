"""The lake on a three-host SeaweedFS cluster with replication, as LakeHub renders it.

Four network namespaces on one bridge play the hosts: a gateway (master, filer, S3 gateway with
its IAM API) and three volume servers, each started with the command
``lakehub.server.lake.cluster`` rendered for it, from its own folder. An in-process control plane
is pointed at the gateway (``lake_backend = "s3-iam"``); two users write through the keys it
hands them; one volume host is killed; every object stays readable, and the isolation holds.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

import netns
from conftest import s3_for
from hubs import hub_dir, lake_cluster
from inproc import InProc, serve_platform
from lakehub.server.lake.cluster import MASTER_PORT, VOLUME_PORT, Cluster, render

MIB = 2**20


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, dict[str, subprocess.Popen[bytes]]]]:
    why = netns.unusable()
    if why:
        pytest.skip(why)
    root = hub_dir("lakehub-cluster-")
    try:
        with lake_cluster(root) as running:
            yield running
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def hub(cluster: tuple[Cluster, Any]) -> Iterator[InProc]:
    with serve_platform(**cluster[0].settings) as ip:
        yield ip


def _volumes_of(address: str) -> set[str]:
    """The collections (buckets) a volume server holds a volume of."""
    status = httpx.get(f"http://{address}:{VOLUME_PORT}/status", timeout=5).json()
    return {v.get("Collection", "") for v in status.get("Volumes") or []}


def test_objects_outlive_a_volume_host_and_the_isolation_holds(
    cluster: tuple[Cluster, dict[str, subprocess.Popen[bytes]]], hub: InProc
) -> None:
    rendered, procs = cluster
    gw = rendered.gateway.address
    users = [f"c{secrets.token_hex(3)}" for _ in range(2)]
    written: dict[str, dict[str, bytes]] = {}
    for name in users:
        hub.quick_user(name)
        s3 = s3_for(hub.credentials(name))
        objects = {f"obj/{i}": os.urandom(1000 + i) for i in range(20)}
        objects["big"] = os.urandom(11 * MIB)
        for key, body in objects.items():
            if key == "big":  # multipart: three parts
                cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
                s3.upload_fileobj(io.BytesIO(body), f"{name}-home", key, Config=cfg)
            else:
                s3.put_object(Bucket=f"{name}-home", Key=key, Body=body)
        written[name] = objects
    # the gateway's local sockets are in its folder: none in the machine's /tmp for good
    assert {p.name for p in (rendered.gateway.folder / "data").glob("*.sock")} >= {"s3.sock"}
    # the internal ports want the cluster's tokens: no object without one
    assert httpx.get(f"http://{gw}:8888/buckets/{users[0]}-home/obj/1").status_code == 401
    for volume in rendered.volumes:
        assert httpx.get(f"http://{volume.address}:{VOLUME_PORT}/3,01637037d6").status_code == 401
    # and their gRPC ports a client certificate of the cluster's CA
    grpc = MASTER_PORT + 10000  # the master's gRPC port
    assert _grpc_tls(gw, grpc, rendered.gateway.folder, with_cert=True) == "open"
    assert _grpc_tls(gw, grpc, rendered.gateway.folder, with_cert=False) == "refused"
    # every bucket's volume is on two of the three servers
    holders = {v.address: _volumes_of(v.address) for v in rendered.volumes}
    for name in users:
        assert sum(f"{name}-home" in held for held in holders.values()) == 2, holders
    # the host holding the most of the users' buckets goes down
    victim = max(holders, key=lambda a: sum(f"{n}-home" in holders[a] for n in users))
    procs[victim].kill()
    procs[victim].wait(10)
    for name in users:
        s3 = s3_for(hub.credentials(name))
        for key, body in written[name].items():
            assert s3.get_object(Bucket=f"{name}-home", Key=key)["Body"].read() == body, key
    # and another user still reaches none of it
    a, b = (s3_for(hub.credentials(n)) for n in users)
    for reader, owner in ((a, users[1]), (b, users[0])):
        with pytest.raises(ClientError) as refused:
            reader.get_object(Bucket=f"{owner}-home", Key="obj/1")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def _grpc_tls(host: str, port: int, folder: Path, with_cert: bool) -> str:
    """What a TLS client trusting the cluster's CA, with or without its certificate, meets on a
    gRPC port: "open" (an HTTP/2 answer) or "refused" (the server ends the connection)."""
    ctx = ssl.create_default_context(cafile=str(folder / "tls" / "ca.crt"))
    ctx.set_alpn_protocols(["h2"])
    if with_cert:
        ctx.load_cert_chain(folder / "tls" / "lake.crt", folder / "tls" / "lake.key")
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            )
            return "open" if tls.recv(9) else "refused"
    except (ssl.SSLError, ConnectionError):
        return "refused"


def test_a_bad_shape_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="replication 010 keeps 2 copies: name as many volumes"):
        render("10.0.0.1", ["10.0.0.2"], tmp_path, replication="010")
    with pytest.raises(ValueError, match="not an IP address: 'db.example'"):
        render("10.0.0.1", ["db.example", "10.0.0.3"], tmp_path)
    with pytest.raises(ValueError, match="an address of its own"):
        render("10.0.0.1", ["10.0.0.1", "10.0.0.3"], tmp_path)
