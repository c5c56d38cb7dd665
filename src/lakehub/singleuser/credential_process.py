"""``python -m lakehub.singleuser.credential_process NAME``: a connection's keys for boto3 and s3fs.

Named in the ``credential_process`` line of each profile of a notebook server's AWS config file
(see :mod:`lakehub.server.notebooks.aws_profiles`). It asks the control plane with the server's own
token (or ``LAKEHUB_TOKEN``) at the moment a session needs the keys, prints them in the format
botocore reads, and writes nothing to disk. Errors go to stderr in one line, with exit code 1.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import quote


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lakehub.singleuser.credential_process CONNECTION", file=sys.stderr)
        return 2
    from lakehub.client import LakeHubError, connect

    try:
        with connect() as client:
            data = client.request("GET", f"/api/connections/{quote(args[0], safe='')}/credentials")
    except LakeHubError as err:
        print(f"lakehub: connection {args[0]!r}: {err.detail}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "Version": 1,
                "AccessKeyId": data["access_key_id"],
                "SecretAccessKey": data["secret_access_key"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
