"""A lake on an existing S3 service with an IAM API (AWS, Ceph RGW with accounts, SeaweedFS's
IAM endpoint): ``lake_backend = "s3-iam"``. LakeHub runs nothing for it.

LakeHub acts through one account of the service allowed to manage its users
(``lake_admin_key_id``, ``lake_admin_secret``). Each LakeHub user is one user of the service,
``<lake_iam_prefix><name>``; the service's other users are never touched. Rules:

- keys: the service issues them (``CreateAccessKey``); a user holds exactly the key LakeHub
  handed out. When a user's key or rights change, every other key of theirs is deleted (a key
  they minted for themselves, where the service lets a user do so, as SeaweedFS does, dies at
  the next rotation); at a hub's start every managed user is checked so;
- rights: one inline policy, ``lakehub``: every S3 action on the user's bucket pattern (so
  they make their own buckets: SeaweedFS knows no narrower action for it), listed actions on
  the shared buckets granted, and no IAM action; and one managed policy, ``<prefix>guard``,
  denying what would open a bucket to the world (bucket policies, bucket and object ACLs);
- quotas: a read-only bucket loses the actions that add data in every policy that reaches it;
  reading, listing, deleting and aborting uploads keep working. The policies hold only Allow
  statements (SeaweedFS refuses Deny in an inline policy), so a read-only bucket can be a whole
  pattern (``alice-*``) or a shared bucket, not one bucket inside someone's pattern (quotas
  never ask for that);
- removal: the policy, the keys, then the user (SeaweedFS keeps a removed user's inline policy
  and gives it back to the next user of that name);
- effective when it returns: removed keys are polled until refused, new keys until accepted;
  policies are not polled (SeaweedFS applies them at once; AWS documents that IAM changes take
  seconds to reach every region).

What was last applied (names, patterns, grants, read-only buckets, key ids and policies; no
secret) is kept in ``state/lake-iam.json``, so that a quota change rewrites the policies without
reading them back, and a sync touches only the users that changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehub.server.config import SettingsError
from lakehub.server.lake.base import Identity, Lake, LakeUnavailable, s3_client
from lakehub.server.vault import write_private

if TYPE_CHECKING:
    from lakehub.server.config import Settings
    from lakehub.server.runtime import Runtime, Tokens

POLICY = "lakehub"
READ = ("s3:GetObject", "s3:GetObjectTagging", "s3:GetBucketLocation", "s3:List*")
# what a read-only bucket still allows: deleting one's way back under a quota
CLEAN = ("s3:DeleteObject", "s3:AbortMultipartUpload")
WRITE = ("s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObjectTagging")
GUARD = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Action": ["s3:PutBucketPolicy", "s3:PutBucketAcl", "s3:PutObjectAcl"],
            "Resource": "*",
        }
    ],
}


def actions(owned: bool, level: str, read_only: bool) -> tuple[str, ...]:
    """The S3 actions on a bucket (or pattern): owned, or shared at ``level``."""
    if owned:
        return READ + CLEAN + ("s3:DeleteBucket",) if read_only else ("s3:*",)
    if level == "read":
        return READ
    return READ + CLEAN + (() if read_only else WRITE)


def policy(ident: Identity, read_only: set[str]) -> dict[str, Any]:
    def covered(bucket: str) -> bool:
        return any(bucket.startswith(r[:-1]) if r.endswith("*") else bucket == r for r in read_only)

    reach = [(b, True, "write") for b in ident.buckets]
    reach += [(b, False, level) for b, level in ident.shared]
    statements = [
        {
            "Effect": "Allow",
            "Action": list(actions(owned, level, covered(bucket))),
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }
        for bucket, owned, level in reach
    ]
    return {"Version": "2012-10-17", "Statement": statements}


class IamLake(Lake):
    @classmethod
    def check(cls, settings: Settings) -> None:
        missing = [
            name
            for name in ("lake_endpoint_url", "lake_admin_key_id", "lake_admin_secret")
            if not getattr(settings, name)
        ]
        if missing:
            raise SettingsError(f"lake_backend 's3-iam' needs {', '.join(missing)}")

    @classmethod
    def of_hub(cls, settings: Settings, runtime: Runtime, tokens: Tokens) -> IamLake:
        cls.check(settings)
        assert settings.lake_endpoint_url and settings.lake_admin_key_id  # checked
        assert settings.lake_admin_secret
        return cls(
            settings.lake_endpoint_url,
            settings.lake_admin_key_id,
            settings.lake_admin_secret.get_secret_value(),
            settings.state_dir,
            iam_url=settings.lake_iam_url,
            region=settings.lake_region,
            prefix=settings.lake_iam_prefix,
        )

    def __init__(
        self,
        endpoint_url: str,
        admin_key: str,
        admin_secret: str,
        state_dir: Path,
        iam_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "lakehub-",
    ) -> None:
        self.endpoint_url = endpoint_url
        self.iam_url = iam_url or endpoint_url
        self.region, self.prefix = region, prefix
        self._key, self._secret = admin_key, admin_secret
        self.state_file = state_dir / "lake-iam.json"
        self._lock = threading.Lock()
        self._s3: Any = None
        self._iam: Any = None

    def __repr__(self) -> str:  # never show the secret
        return f"IamLake({self.endpoint_url!r}, {self._key!r})"

    # clients -----------------------------------------------------------------------------
    def admin(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(self.endpoint_url, self._key, self._secret)
        return self._s3

    def iam(self) -> Any:
        if self._iam is None:
            import boto3
            from botocore.config import Config

            self._iam = boto3.client(
                "iam",
                endpoint_url=self.iam_url,
                region_name=self.region,
                aws_access_key_id=self._key,
                aws_secret_access_key=self._secret,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            )
        return self._iam

    def _call(self, op: str, **args: Any) -> Any:
        """One IAM call; a missing entity is ``None``, any other failure ``LakeUnavailable``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.iam(), op)(**args)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code") or err.response.get("Code")
            if code == "NoSuchEntity":
                return None
            if code == "EntityAlreadyExists" and op in ("create_user", "create_policy"):
                return None
            raise LakeUnavailable(f"the lake's IAM refused {op}: {code}") from err
        except BotoCoreError as err:
            raise LakeUnavailable(f"the lake's IAM at {self.iam_url} did not answer") from err

    # the contract --------------------------------------------------------------------------
    def issue_key(self, name: str) -> tuple[str, str]:
        self._call("create_user", UserName=self.prefix + name)
        made = self._call("create_access_key", UserName=self.prefix + name)
        if made is None:
            raise LakeUnavailable(f"the lake's IAM lost the user {self.prefix + name}")
        key = made["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def prepare(self, identities: list[Identity]) -> list[str]:
        """At a hub's start: every managed user of the service checked, not only the changed."""
        return self._apply(identities, None, full=True)

    def set_identities(self, identities: list[Identity]) -> list[str]:
        return self._apply(identities, None)

    def set_read_only(self, buckets: set[str]) -> None:
        self._apply(None, buckets)

    # applying ------------------------------------------------------------------------------
    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The last applied state, locked against the hub's other processes, saved after."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.state_file.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(self.state_file.read_text())
            except FileNotFoundError:
                state = {"users": {}, "read_only": []}
            yield state
            write_private(self.state_file, json.dumps(state, indent=1).encode())

    def _apply(
        self, identities: list[Identity] | None, read_only: set[str] | None, full: bool = False
    ) -> list[str]:
        with self._state() as state:
            if read_only is not None:
                state["read_only"] = sorted(read_only)
            if identities is None:  # the same users, other read-only buckets
                identities = [
                    Identity(n, u["key"], "", tuple(u["buckets"]), tuple(map(tuple, u["shared"])))
                    for n, u in state["users"].items()
                ]
            users: dict[str, Any] = state["users"]
            stale, removed_keys = [], []
            wanted = {i.name for i in identities}
            gone = set(users) - wanted
            if full:
                gone |= {n for n in self._managed() if n not in wanted}
            for name in sorted(gone):
                removed_keys += self._remove(name)
                users.pop(name, None)
            for ident in identities:
                doc = policy(ident, set(state["read_only"]))
                digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
                was = users.get(ident.name, {})
                if not full and was.get("key") == ident.access_key and was.get("policy") == digest:
                    continue
                keys = self._keys(ident.name)
                if ident.access_key not in keys:
                    stale.append(ident.name)  # a key the service did not issue: a new one
                    continue  # and this user is applied again with it
                for key in keys:
                    if key != ident.access_key:
                        self._call(
                            "delete_access_key", UserName=self.prefix + ident.name, AccessKeyId=key
                        )
                        removed_keys.append(key)
                self._call(
                    "put_user_policy",
                    UserName=self.prefix + ident.name,
                    PolicyName=POLICY,
                    PolicyDocument=json.dumps(doc),
                )
                self._call(
                    "attach_user_policy",
                    UserName=self.prefix + ident.name,
                    PolicyArn=self._guard(state),
                )
                users[ident.name] = {
                    "key": ident.access_key,
                    "policy": digest,
                    "buckets": list(ident.buckets),
                    "shared": [list(s) for s in ident.shared],
                }
                if not was or was.get("key") != ident.access_key:
                    self.wait_key(ident.access_key, present=True, timeout=30)
            for key in removed_keys:
                self.wait_key(key, present=False, timeout=30)
            return stale

    def _guard(self, state: dict[str, Any]) -> str:
        """The managed policy every managed user carries (made once; its ARN kept)."""
        if "guard" not in state:
            name = self.prefix + "guard"
            made = self._call("create_policy", PolicyName=name, PolicyDocument=json.dumps(GUARD))
            if made is not None:
                state["guard"] = made["Policy"]["Arn"]
            else:  # made before, by a hub that lost its state
                policies = self._listed("list_policies", "Policies", Scope="Local")
                found = [p["Arn"] for p in policies if p["PolicyName"] == name]
                if not found:
                    raise LakeUnavailable(f"the lake's IAM lost the policy {name}")
                state["guard"] = found[0]
        return str(state["guard"])

    def _managed(self) -> set[str]:
        """The LakeHub names of the service's users that carry the prefix."""
        return {
            u["UserName"].removeprefix(self.prefix)
            for u in self._listed("list_users", "Users")
            if u["UserName"].startswith(self.prefix)
        }

    def _listed(self, op: str, key: str, **args: Any) -> list[dict[str, Any]]:
        """Every item of a paginated IAM listing, as :meth:`_call` fails."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            pages = self.iam().get_paginator(op).paginate(**args)
            return [item for page in pages for item in page.get(key, [])]
        except (BotoCoreError, ClientError) as err:
            raise LakeUnavailable(f"the lake's IAM at {self.iam_url} failed {op}") from err

    def _keys(self, name: str) -> list[str]:
        """The user's access key ids (none: no such user, or no key)."""
        listed = self._call("list_access_keys", UserName=self.prefix + name) or {}
        return [k["AccessKeyId"] for k in listed.get("AccessKeyMetadata", [])]

    def _remove(self, name: str) -> list[str]:
        """Delete a user: policies, keys, then the user; returns the keys it had."""
        user = self.prefix + name
        listed = self._call("list_user_policies", UserName=user)
        for pol in (listed or {}).get("PolicyNames", []):
            self._call("delete_user_policy", UserName=user, PolicyName=pol)
        attached = self._call("list_attached_user_policies", UserName=user)
        for pol in (attached or {}).get("AttachedPolicies", []):
            self._call("detach_user_policy", UserName=user, PolicyArn=pol["PolicyArn"])
        keys = self._keys(name)
        for key in keys:
            self._call("delete_access_key", UserName=user, AccessKeyId=key)
        self._call("delete_user", UserName=user)
        return keys
