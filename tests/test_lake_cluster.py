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
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

import netns
from conftest import s3_for
from hubs import hub_dir
from inproc import InProc, serve_platform
from lakehub.server.lake.cluster import MASTER_PORT, S3_PORT, VOLUME_PORT, Cluster, render
from lakehub.server.lake.seaweedfs import weed_binary

MIB = 2**20


def _nodes(gateway: str) -> list[str]:
    """The volume servers the master knows."""
    try:
        topo = httpx.get(f"http://{gateway}:{MASTER_PORT}/dir/status", timeout=2).json()
    except (httpx.TransportError, ValueError):
        return []
    return [
        node["Url"]
        for dc in topo["Topology"].get("DataCenters") or []
        for rack in dc.get("Racks") or []
        for node in rack.get("DataNodes") or []
    ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, dict[str, subprocess.Popen[bytes]]]]:
    why = netns.unusable()
    if why:
        pytest.skip(why)
    root = hub_dir("lakehub-cluster-")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with netns.hosts("10.232", 4) as (_, hosts):
            gw, volumes = hosts[0][1], hosts[1:]
            rendered = render(gw, [a for _, a in volumes], root, weed=weed_binary())
            for (ns, _), host in zip(hosts, rendered.hosts, strict=True):
                with open(root / f"{host.address}.log", "ab") as log:
                    procs[host.address] = subprocess.Popen(
                        ["ip", "netns", "exec", ns, *host.argv], cwd=host.folder,
                        env={**os.environ, **host.env}, stdout=log, stderr=log)  # fmt: skip
            deadline = time.monotonic() + 90
            while len(_nodes(gw)) < 3 or not _answers(f"http://{gw}:{S3_PORT}/"):
                dead = [a for a, p in procs.items() if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    logs = {a: (root / f"{a}.log").read_text()[-1500:] for a in procs}
                    raise AssertionError(f"the cluster did not come up (dead: {dead}): {logs}")
                time.sleep(0.2)
            yield rendered, procs
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


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
    # the internal ports want the cluster's tokens: no object without one
    assert httpx.get(f"http://{gw}:8888/buckets/{users[0]}-home/obj/1").status_code == 401
    for volume in rendered.volumes:
        assert httpx.get(f"http://{volume.address}:{VOLUME_PORT}/3,01637037d6").status_code == 401
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


def test_a_bad_shape_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="replication 010 keeps 2 copies: name as many volumes"):
        render("10.0.0.1", ["10.0.0.2"], tmp_path, replication="010")
    with pytest.raises(ValueError, match="not an IP address: 'db.example'"):
        render("10.0.0.1", ["db.example", "10.0.0.3"], tmp_path)
    with pytest.raises(ValueError, match="an address of its own"):
        render("10.0.0.1", ["10.0.0.1", "10.0.0.3"], tmp_path)
