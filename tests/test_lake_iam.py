"""The lake on an existing S3 service with an IAM API (``lake_backend = "s3-iam"``).

The service is SeaweedFS run as an operator would run it beside LakeHub, not by LakeHub: one
``weed mini`` with an administrator of its own and its IAM API writable
(``-s3.iam.readOnly=false``). An in-process control plane is pointed at it with that
administrator's key; users then act with the keys the API hands them, through boto3 and awscli.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import s3_for
from hubs import S3Service, free_port, hub_dir
from inproc import InProc, serve_platform

API = "/services/lakehub/api"
AWS = "/usr/bin/aws"
PREFIX = "lh-"


@pytest.fixture(scope="module")
def service() -> Iterator[dict[str, str]]:
    """The existing service, and a user of its own that LakeHub must leave alone."""
    root = hub_dir("lakehub-iam-")
    svc = S3Service(root)
    try:
        svc.start()
        _iam(svc.url, svc.key, svc.secret).create_user(UserName="outsider")
        yield {
            "url": svc.url,
            "key": svc.key,
            "secret": svc.secret,
            "prefix": PREFIX,
            **svc.settings(PREFIX),
        }
    finally:
        svc.stop()
        shutil.rmtree(root, ignore_errors=True)


def _iam(url: str, key: str, secret: str) -> Any:
    return boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def hub(service: dict[str, str]) -> Iterator[InProc]:
    settings = {k: v for k, v in service.items() if k.startswith("lake_")}
    with serve_platform(**settings) as ip:
        yield ip


@pytest.fixture
def admin_iam(service: dict[str, str]) -> Any:
    return _iam(service["url"], service["key"], service["secret"])


def _user(hub: InProc) -> str:
    name = f"u{secrets.token_hex(3)}"
    hub.quick_user(name)
    return name


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code") or err.response.get("Code"))


def _refused(call: Any, *codes: str) -> None:
    with pytest.raises(ClientError) as caught:
        call()
    assert _code(caught.value) in (codes or ("AccessDenied",)), caught.value.response


def test_each_user_is_a_user_of_the_service_limited_to_their_buckets(
    hub: InProc, admin_iam: Any, tmp_path: Path
) -> None:
    alice, bob = _user(hub), _user(hub)
    ca, cb = hub.credentials(alice), hub.credentials(bob)
    assert ca["endpoint_url"] == hub.platform.directory.lake.endpoint_url
    # the keys are the service's: its users, named with the prefix, hold them
    for name, creds in ((alice, ca), (bob, cb)):
        keys = admin_iam.list_access_keys(UserName=PREFIX + name)["AccessKeyMetadata"]
        assert [k["AccessKeyId"] for k in keys] == [creds["access_key_id"]]
        doc = admin_iam.get_user_policy(UserName=PREFIX + name, PolicyName="lakehub")
        (own,) = doc["PolicyDocument"]["Statement"]  # every S3 action, on their buckets only
        assert own["Resource"] == [f"arn:aws:s3:::{name}-*", f"arn:aws:s3:::{name}-*/*"]
        assert "iam:" not in json.dumps(doc["PolicyDocument"])
        attached = admin_iam.list_attached_user_policies(UserName=PREFIX + name)
        assert [p["PolicyName"] for p in attached["AttachedPolicies"]] == [f"{PREFIX}guard"]
    s3a, s3b = s3_for(ca), s3_for(cb)
    s3a.put_object(Bucket=f"{alice}-home", Key="a.txt", Body=b"alice's")
    s3a.create_bucket(Bucket=f"{alice}-more")
    s3a.put_object(Bucket=f"{alice}-more", Key="m", Body=b"m")
    assert s3a.get_object(Bucket=f"{alice}-home", Key="a.txt")["Body"].read() == b"alice's"
    # bob reaches none of it, and cannot make a bucket in alice's name
    _refused(lambda: s3b.get_object(Bucket=f"{alice}-home", Key="a.txt"))
    _refused(lambda: s3b.list_objects_v2(Bucket=f"{alice}-home"))
    _refused(lambda: s3b.put_object(Bucket=f"{alice}-home", Key="b", Body=b"x"))
    _refused(lambda: s3b.delete_object(Bucket=f"{alice}-home", Key="a.txt"))
    _refused(lambda: s3b.create_bucket(Bucket=f"{alice}-bobs"))
    # nor a bucket policy opening her own bucket to anyone
    public = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bob}-home/*",
            }
        ],
    }
    _refused(lambda: s3b.put_bucket_policy(Bucket=f"{bob}-home", Policy=json.dumps(public)))
    # nor the service's IAM: no user of her own making, no key for another
    iam_b = _iam(cb["endpoint_url"], cb["access_key_id"], cb["secret_access_key"])
    _refused(lambda: iam_b.create_user(UserName="bobs-friend"))
    _refused(lambda: iam_b.create_access_key(UserName=PREFIX + alice))
    # awscli, with alice's keys only
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_ACCESS_KEY_ID": ca["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": ca["secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    (tmp_path / "up.txt").write_text("from awscli")

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [AWS, "--endpoint-url", ca["endpoint_url"], *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)

    done = aws("s3", "cp", str(tmp_path / "up.txt"), f"s3://{alice}-more/up.txt")
    assert done.returncode == 0, done.stderr
    assert "up.txt" in aws("s3", "ls", f"s3://{alice}-more/").stdout
    listed = aws("s3", "ls")
    assert listed.returncode == 0 and f"{alice}-home" in listed.stdout, listed.stderr
    assert f"{bob}-home" not in listed.stdout
    denied = aws("s3", "cp", str(tmp_path / "up.txt"), f"s3://{bob}-home/up.txt")
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr, denied.stderr
    # the service's own user is left alone
    assert admin_iam.get_user(UserName="outsider")["User"]["UserName"] == "outsider"


def test_rotation_and_removal_end_every_old_key(hub: InProc, admin_iam: Any) -> None:
    carol = _user(hub)
    old = hub.credentials(carol)
    s3_for(old).put_object(Bucket=f"{carol}-home", Key="k", Body=b"v")
    # a key carol mints for herself through the service's IAM (SeaweedFS lets a user do so)
    iam_c = _iam(old["endpoint_url"], old["access_key_id"], old["secret_access_key"])
    minted = iam_c.create_access_key()["AccessKey"]
    mine = {
        **old,
        "access_key_id": minted["AccessKeyId"],
        "secret_access_key": minted["SecretAccessKey"],
    }
    assert s3_for(mine).get_object(Bucket=f"{carol}-home", Key="k")["Body"].read() == b"v"
    with hub.http(carol) as c:
        r = c.post(f"{API}/lake/credentials/rotate")
        assert r.status_code == 200, r.text
        new = r.json()
    assert new["access_key_id"] != old["access_key_id"]
    # refused as soon as the rotation answered, the new one works
    _refused(lambda: s3_for(old).list_objects_v2(Bucket=f"{carol}-home"), "InvalidAccessKeyId")
    _refused(lambda: s3_for(mine).list_objects_v2(Bucket=f"{carol}-home"), "InvalidAccessKeyId")
    assert s3_for(new).get_object(Bucket=f"{carol}-home", Key="k")["Body"].read() == b"v"
    keys = admin_iam.list_access_keys(UserName=PREFIX + carol)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [new["access_key_id"]]
    # removed: the key is refused, and the service keeps neither the user nor its policy
    with hub.admin_http() as c:
        assert c.delete(f"/users/{carol}").status_code == 204
    _refused(lambda: s3_for(new).list_objects_v2(Bucket=f"{carol}-home"), "InvalidAccessKeyId")
    _refused(lambda: admin_iam.get_user(UserName=PREFIX + carol), "NoSuchEntity")
    _refused(
        lambda: admin_iam.get_user_policy(UserName=PREFIX + carol, PolicyName="lakehub"),
        "NoSuchEntity",
    )


def test_space_grants_and_quotas_become_policies(hub: InProc) -> None:
    owner, reader = _user(hub), _user(hub)
    space = f"iam{secrets.token_hex(3)}"
    bucket = f"space-{space}"
    with hub.http(owner) as c:
        assert c.post(f"{API}/spaces", json={"name": space}).status_code == 201
        grants = f"{API}/spaces/{space}/grants"
        s3o, s3r = s3_for(hub.credentials(owner)), s3_for(hub.credentials(reader))
        s3o.put_object(Bucket=bucket, Key="shared.txt", Body=b"for readers")
        _refused(lambda: s3r.get_object(Bucket=bucket, Key="shared.txt"))
        assert c.put(grants, json={"user": reader, "access": "read"}).status_code == 200
        assert s3r.get_object(Bucket=bucket, Key="shared.txt")["Body"].read() == b"for readers"
        _refused(lambda: s3r.put_object(Bucket=bucket, Key="r.txt", Body=b"x"))
        assert c.put(grants, json={"user": reader, "access": "write"}).status_code == 200
        s3r.put_object(Bucket=bucket, Key="r.txt", Body=b"x")
        big = io.BytesIO(os.urandom(11 * 2**20))  # three parts
        s3r.upload_fileobj(
            big,
            bucket,
            "big",
            Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20),
        )
        assert s3o.head_object(Bucket=bucket, Key="big")["ETag"].strip('"').endswith("-3")
        assert c.delete(grants, params={"user": reader}).status_code == 204
        _refused(lambda: s3r.get_object(Bucket=bucket, Key="shared.txt"))
    # a full quota: writes refused, reads and deletes go on; lifted, writes again
    with hub.admin_http() as c:
        assert c.put(f"/quotas/user/{owner}", json={"max_objects": 1}).status_code == 200
        s3o.put_object(Bucket=f"{owner}-home", Key="one", Body=b"1")
        hub.platform.quotas.enforce()
        _refused(lambda: s3o.put_object(Bucket=f"{owner}-home", Key="two", Body=b"2"))
        _refused(lambda: s3o.create_bucket(Bucket=f"{owner}-new"))
        assert s3o.get_object(Bucket=f"{owner}-home", Key="one")["Body"].read() == b"1"
        s3o.delete_object(Bucket=f"{owner}-home", Key="one")
        assert c.delete(f"/quotas/user/{owner}").status_code == 204
        hub.platform.quotas.enforce()
        s3o.put_object(Bucket=f"{owner}-home", Key="two", Body=b"2")


def test_a_hub_start_checks_every_user_and_replaces_keys_it_did_not_issue(
    hub: InProc, admin_iam: Any
) -> None:
    dave = _user(hub)
    before = hub.credentials(dave)
    # a key the service holds for dave that LakeHub never handed out, and dave's user gone
    # behind LakeHub's back: the start's full check mends both
    stray = admin_iam.create_access_key(UserName=PREFIX + dave)["AccessKey"]["AccessKeyId"]
    erin = _user(hub)
    erin_key = hub.credentials(erin)["access_key_id"]
    admin_iam.delete_user_policy(UserName=PREFIX + erin, PolicyName="lakehub")
    admin_iam.delete_access_key(UserName=PREFIX + erin, AccessKeyId=erin_key)
    admin_iam.delete_user(UserName=PREFIX + erin)
    lake = hub.platform.directory.lake
    lake.state_file.unlink()  # and the hub lost what it last applied
    hub.platform.directory.prepare_lake()
    keys = admin_iam.list_access_keys(UserName=PREFIX + dave)["AccessKeyMetadata"]
    assert stray not in [k["AccessKeyId"] for k in keys]
    assert hub.credentials(dave)["access_key_id"] == before["access_key_id"]
    again = hub.credentials(erin)
    assert again["access_key_id"] != erin_key  # a new key from the service
    s3_for(again).put_object(Bucket=f"{erin}-home", Key="back", Body=b"1")


def test_missing_settings_are_named_in_one_line(tmp_path: Path) -> None:
    from lakehub.server.config import SettingsError, load_settings
    from lakehub.server.lake import lake_class

    settings = load_settings(data_dir=tmp_path, lake_backend="s3-iam", lake_endpoint_url="http://x")
    with pytest.raises(SettingsError, match="needs lake_admin_key_id, lake_admin_secret$"):
        lake_class(settings).check(settings)


def test_the_lake_port_is_only_checked_for_a_lake_run_here() -> None:
    """A service LakeHub does not run may hold the embedded lake's port on this machine
    (SeaweedFS's S3 default is LakeHub's too): ``lakehub up`` must not refuse to start then."""
    from lakehub.server.config import load_settings
    from lakehub.server.up import UpError, preflight

    root = hub_dir("lakehub-iam-preflight-")
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            base = {"data_dir": root / "data", "lake_port": port, "port": free_port()}
            with pytest.raises(UpError, match=f"port {port} for the lake is already in use"):
                preflight(load_settings(**base))
            elsewhere = {
                "lake_backend": "s3-iam",
                "lake_endpoint_url": f"http://127.0.0.1:{port}",
                "lake_admin_key_id": "K",
                "lake_admin_secret": "S",
            }
            preflight(load_settings(**base, **elsewhere))
    finally:
        shutil.rmtree(root, ignore_errors=True)
