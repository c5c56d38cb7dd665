"""Implementations chosen by name in the settings (``lake_backend``, ``compute_engines``,
``ingest_sinks``): registered names, ``module:Class`` paths to classes of this module, and
one-line errors for names that lead nowhere. No hub needed.

The classes below are stand-ins, named as such: an outside lake, an engine without clusters, a
sink that keeps what it is given. They exist to be chosen by a ``module:Class`` path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lakehub.server.compute import engines
from lakehub.server.compute.base import Cluster, ClusterRequest, Engine, EngineContext
from lakehub.server.compute.dask_gateway import DaskEngine
from lakehub.server.compute.spark_standalone import HEAD_MEMORY, SparkEngine
from lakehub.server.config import Settings, SettingsError, load_settings, resolve
from lakehub.server.ingest.base import Batch, Entry, Fmt, Sink, Stream
from lakehub.server.ingest.sinks import LakeWriteError, RawSink, S3Writer, sinks
from lakehub.server.lake import lake_class, open_lake
from lakehub.server.lake.base import Identity, Lake
from lakehub.server.lake.seaweedfs import SeaweedFS
from lakehub.server.runtime import PORT_NAMES, Runtime, tokens
from lakehub.server.up import components


class OutsideLake(Lake):
    """Stand-in for a lake run elsewhere (an outside S3 service): nothing for ``up`` to start."""

    def __init__(self, endpoint_url: str, fail: Exception | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.fail = fail
        self.objects: dict[tuple[str, str], bytes] = {}
        self.identities: list[Identity] = []

    @classmethod
    def of_hub(cls, settings: Settings, runtime: Runtime, tokens: Any) -> OutsideLake:
        return cls("http://127.0.0.1:9")

    def admin(self) -> Any:
        raise AssertionError("callers use the contract's methods, not the admin client")

    def set_identities(self, identities: list[Identity]) -> list[str]:
        self.identities = identities
        return []

    def put(self, bucket: str, key: str, body: bytes) -> None:
        if self.fail:
            raise self.fail
        self.objects[(bucket, key)] = body


class NoClusters(Engine):
    """Stand-in engine of Dask clusters that never has any."""

    kind = "dask"

    @classmethod
    def of_hub(cls, hub: EngineContext) -> NoClusters:
        return cls()

    def start(self, owner: str, request: ClusterRequest) -> Cluster:
        raise NotImplementedError

    def list(self, owner: str | None = None) -> list[Cluster]:
        return []

    def stop(self, owner: str, name: str) -> None:
        raise NotImplementedError


class KeepingSink(Sink):
    """Stand-in sink that writes the number of entries of each batch as one object."""

    def write(self, batch: Batch) -> tuple[int, int]:
        body = str(len(batch.entries)).encode()
        self.s3.put(batch.stream.bucket, batch.key, body)
        return len(batch.entries), len(body)


class NotALake:
    pass


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=str(tmp_path))


def runtime() -> Runtime:
    return Runtime("http://127.0.0.1:8000", {n: 20000 + i for i, n in enumerate(PORT_NAMES)})


def test_registered_names_are_the_defaults(settings: Settings) -> None:
    assert lake_class(settings) is SeaweedFS
    assert settings.compute_engines == {"dask": "dask-gateway", "spark": "spark-standalone"}
    built = sinks(settings, S3Writer(OutsideLake("http://127.0.0.1:9")), lambda _: 1 << 20)
    assert {k: type(v).__name__ for k, v in built.items()} == {
        "records": "RecordSink",
        "raw": "RawSink",
    }


def test_a_bad_name_is_one_line_naming_the_choices(tmp_path: Path) -> None:
    cases = {
        "lake_backend": ("weed", "s3-iam, seaweedfs"),
        "compute_engines": ({"dask": "gateway"}, "dask-gateway, spark-standalone"),
        "ingest_sinks": ({"records": "parquet", "raw": "raw"}, "raw, records"),
    }
    for field, (value, choices) in cases.items():
        with pytest.raises(SettingsError) as err:
            load_settings(data_dir=str(tmp_path), **{field: value})
        text = str(err.value)
        assert "\n" not in text and field in text and choices in text and "module:Class" in text
    with pytest.raises(SettingsError, match="records and raw"):
        load_settings(data_dir=str(tmp_path), ingest_sinks={"records": "records"})
    # the command line says it in one line too, as for every other bad setting
    proc = subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "status", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("LAKEHUB_")},
            "LAKEHUB_LAKE_BACKEND": "weed",
        },
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: invalid settings: lake_backend: unknown lake 'weed': choose one of s3-iam, "
        "seaweedfs, or name a class as module:Class"
    )


def test_a_class_path_that_leads_nowhere_says_why(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="cannot load the lake 'no_such_module:Lake'"):
        resolve("lake", "no_such_module:Lake", Lake)
    with pytest.raises(SettingsError, match="cannot load the lake 'test_plugins:Missing'"):
        resolve("lake", "test_plugins:Missing", Lake)
    with pytest.raises(SettingsError, match="'test_plugins:NotALake' is not a Lake"):
        resolve("lake", "test_plugins:NotALake", Lake)
    wrong_kind = settings.model_copy(
        update={"compute_engines": {"spark": "test_plugins:NoClusters"}}
    )
    with pytest.raises(SettingsError, match="no engine of spark clusters"):
        engines(context(wrong_kind, []))


def test_a_lake_named_by_class_path_is_the_one_used(tmp_path: Path) -> None:
    outside = load_settings(data_dir=str(tmp_path), lake_backend="test_plugins:OutsideLake")
    rt = runtime()
    lake = open_lake(outside, rt, tokens(outside))
    assert isinstance(lake, OutsideLake)
    # nothing to start for it; the embedded lake is started in its own folder
    assert "lake" not in [c.name for c in components(outside, rt, lake)]
    embedded = load_settings(data_dir=str(tmp_path))
    weed = open_lake(embedded, rt, tokens(embedded))
    [started] = [c for c in components(embedded, rt, weed) if c.name == "lake"]
    assert started.cwd == embedded.state_dir / "lake" and "mini" in started.argv
    # a lake that runs already gets its identities at once from prepare
    alice = Identity("alice", "AK", "SK", ("alice-*",))
    lake.prepare([alice])
    assert lake.identities == [alice]


def test_the_lake_writer_tells_a_refusal_from_a_lake_that_does_not_answer() -> None:
    lake = OutsideLake("http://127.0.0.1:9")
    S3Writer(lake).put("alice-home", "a/b", b"x")
    assert lake.objects == {("alice-home", "a/b"): b"x"}
    lake.fail = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    with pytest.raises(LakeWriteError) as refused:
        S3Writer(lake).put("alice-home", "c", b"x")
    lake.fail = EndpointConnectionError(endpoint_url=lake.endpoint_url)
    with pytest.raises(LakeWriteError) as silent:
        S3Writer(lake).put("alice-home", "c", b"x")
    assert not refused.value.unreachable and silent.value.unreachable


def test_a_sink_named_by_class_path_writes_its_kind_of_stream(tmp_path: Path) -> None:
    chosen = load_settings(
        data_dir=str(tmp_path), ingest_sinks={"records": "test_plugins:KeepingSink", "raw": "raw"}
    )
    lake = OutsideLake("http://127.0.0.1:9")
    built = sinks(chosen, S3Writer(lake), lambda _: 1 << 20)
    assert isinstance(built["records"], KeepingSink) and isinstance(built["raw"], RawSink)
    stream = Stream(1, "s", "alice", "records", "alice-home", "streams/s", ("t.*",))
    entries = [Entry(1, 7, Fmt.JSON, 0.0, "t.x", b'{"n": 1}') for _ in range(3)]
    assert built["records"].write(Batch(stream, "000000000001-000000000000", entries)) == (3, 1)
    assert lake.objects == {("alice-home", "000000000001-000000000000"): b"3"}


def context(settings: Settings, plans: list[tuple[Any, ...]]) -> EngineContext:
    def plan(*args: Any) -> Any:
        plans.append(args)
        return None

    return EngineContext(
        settings=settings,
        runtime=runtime(),
        service_token="token",
        lake_env=lambda owner: {},
        plan=plan,
        environment=lambda name: None,
        ui_url="http://127.0.0.1:8000/services/lakehub/compute",
    )


def test_engines_are_built_by_name_with_the_contract_s_lifecycle(settings: Settings) -> None:
    plans: list[tuple[Any, ...]] = []
    built = engines(context(settings, plans))
    assert isinstance(built["dask"], DaskEngine) and isinstance(built["spark"], SparkEngine)
    spark = built["spark"]
    assert isinstance(spark, SparkEngine)
    request = ClusterRequest(workers=3)
    spark.check("alice", request, [])  # every start is planned as a spark start
    assert plans == [("alice", "spark", request, [], HEAD_MEMORY)]
    assert spark.ui_proxy is not None
    assert spark.ui_proxy("alice", "alice-1") == (
        "http://127.0.0.1:8000/services/lakehub/compute/spark/alice-1/ui"
    )
    built["dask"].close()
    only = settings.model_copy(update={"compute_engines": {"dask": "test_plugins:NoClusters"}})
    [(kind, engine)] = engines(context(only, plans)).items()
    assert kind == "dask" and isinstance(engine, NoClusters)
    engine.open()  # the contract's defaults: nothing to adopt, nothing lives with a server
    assert engine.stop_for_server("alice", "") == [] and engine.running() == []
    engine.close()
