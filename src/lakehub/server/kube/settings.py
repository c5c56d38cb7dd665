"""What the Kubernetes manifests carry of the settings: the non-secret ones as a ``lakehub.toml``,
the secret ones as references to Secrets the operator creates, and the ``runtime.json`` the
components read their ports from.

Rules:

- the settings must name a lake and a database that live outside the hub's disk: ``lake_backend
  = "s3-iam"`` with ``lake_endpoint_url``, and a PostgreSQL ``db_url``; anything else is
  refused in one line (:class:`KubeError`) naming what is missing;
- a secret never reaches the output: ``db_url`` (its password), the lake's admin key, and every
  ``SecretStr`` setting are left out of the TOML and named as keys of the Secret
  ``lakehub-secrets``, which the containers read as environment variables (``LAKEHUB_*`` win
  over the file); the hub's own keys and tokens (what ``runtime.tokens`` and the vault read in
  ``DATA_DIR/state``) are keys of the Secret ``lakehub-state``, mounted as those files;
- what only makes sense on one machine is replaced, and said so in the TOML: listening
  addresses and fixed ports, no warm starter or unix accounts, no local metrics store, and no
  compute engine in the control plane (its engines reach dask-gateway and Spark at 127.0.0.1;
  notebooks use the gateway's Helm chart and Spark on Kubernetes directly).
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import SecretStr

from lakehub.server.config import Settings
from lakehub.server.runtime import PORT_NAMES

DATA_DIR = "/srv/lakehub"
CONFIG_DIR = "/etc/lakehub"
SECRETS = "lakehub-secrets"  # LAKEHUB_* settings that are secrets, as environment variables
STATE = "lakehub-state"  # the hub's keys and tokens, as files in DATA_DIR/state
# the files runtime.tokens() and the vault read (each made on first use on one machine)
STATE_KEYS = (
    "secret.key",
    "service.token",
    "proxy.token",
    "gateway.token",
    "metrics.token",
    "cookie.secret",
    "lake-admin.key",
    "lake-admin.secret",
)
# fixed ports inside the pods (one machine picks free ones)
PORTS = {"proxy": 8000, "proxy_api": 8001, "hub": 8081, "api": 8080}
# settings that name a place on one machine: not carried over
MACHINE_ONLY = ("data_dir", "environments_dir", "lake_binary", "notebook_python", "lake_port")
# settings held in the Secret: never in the ConfigMap
SECRET_SETTINGS = ("db_url", "lake_admin_key_id")


class KubeError(ValueError):
    """Settings that cannot be rendered for Kubernetes; the message is one line for a person."""


def check(settings: Settings) -> None:
    """Refuse settings whose lake or database live on one machine's disk, in one line."""
    problems = []
    if settings.lake_backend != "s3-iam":
        problems.append(
            f"lake_backend must be 's3-iam' (not {settings.lake_backend!r}: the embedded lake "
            "lives on one machine's disk)"
        )
    if not settings.lake_endpoint_url:
        problems.append("lake_endpoint_url is missing")
    if not settings.db_url:
        problems.append("db_url must be a PostgreSQL URL (not the default SQLite file)")
    elif not settings.db_url.split(":", 1)[0].startswith("postgresql"):
        problems.append(f"db_url must be a PostgreSQL URL (not {_scheme(settings.db_url)})")
    if settings.forward_tls_cert or settings.forward_tls_key:
        problems.append("forward_tls_cert/forward_tls_key are not rendered (terminate TLS before)")
    if problems:
        raise KubeError("cannot render for Kubernetes: " + "; ".join(problems))


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0] + " URL" if ":" in url else "that value"


def ingest_ports(settings: Settings) -> tuple[int, int]:
    """The receivers' Forward and HTTP ports (0 on one machine picks one: here, the default)."""
    fields = Settings.model_fields
    forward = settings.forward_port or fields["forward_port"].default
    http = settings.ingest_http_port or fields["ingest_http_port"].default
    return int(forward), int(http)


def overrides(settings: Settings) -> dict[str, Any]:
    """The settings replaced on Kubernetes (see the module's rules)."""
    forward, http = ingest_ports(settings)
    return {
        "host": "0.0.0.0",
        "port": PORTS["proxy"],
        "ingest_host": "0.0.0.0",
        "forward_port": forward,
        "ingest_http_port": http,
        "warm_start": False,
        "isolate_users": False,
        "metrics": False,
        "compute_engines": {},
    }


def secret_keys(settings: Settings) -> list[str]:
    """The keys of ``lakehub-secrets`` the settings need (environment variable names)."""
    keys = ["LAKEHUB_DB_URL", "LAKEHUB_LAKE_ADMIN_KEY_ID", "LAKEHUB_LAKE_ADMIN_SECRET"]
    if settings.auth == "oauth" or settings.oauth_client_secret is not None:
        keys.append("LAKEHUB_OAUTH_CLIENT_SECRET")
    if settings.smtp_user or settings.smtp_password is not None:
        keys.append("LAKEHUB_SMTP_PASSWORD")
    return sorted(keys)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else "inf")
    if isinstance(value, str):  # JSON's escapes are TOML's, but for DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def lakehub_toml(settings: Settings) -> str:
    """The non-secret settings as ``lakehub.toml``; what Kubernetes replaces comes last."""
    replaced = overrides(settings)
    skip = {*MACHINE_ONLY, *SECRET_SETTINGS, *replaced}
    lines = [
        "# LakeHub's settings on Kubernetes, rendered by lakehub.server.kube. Secrets are not",
        f"# here: they come from the Secret {SECRETS!r} as LAKEHUB_* environment variables.",
    ]
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in skip or value is None or isinstance(value, SecretStr):
            continue
        lines.append(f"{name} = {_toml_value(json.loads(json.dumps(value, default=str)))}")
    lines.append("# replaced on Kubernetes: fixed ports, no warm starter, unix accounts, local")
    lines.append(
        "# metrics store or compute engine in the control plane (see docs/howto/kubernetes.md)"
    )
    lines += [f"{name} = {_toml_value(value)}" for name, value in replaced.items()]
    return "\n".join(lines) + "\n"


def runtime_json(settings: Settings, public_url: str) -> str:
    """``run/runtime.json`` as the components read it: the ports inside their pods (0 for what
    does not run there) and the front door's public address; ``ready``, as the pod's readiness
    says whether it is."""
    forward, http = ingest_ports(settings)
    known = {**PORTS, "forward": forward, "ingest_http": http}
    ports = {name: known.get(name, 0) for name in PORT_NAMES}
    data = {"front_url": public_url.rstrip("/"), "ports": ports, "state": "ready"}
    return json.dumps(data, indent=2) + "\n"
