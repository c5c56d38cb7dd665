"""The SDK's dataset catalog: find a dataset, load it in one line, publish a dataframe.

    import lakehub
    sales = lakehub.datasets.get("sales")
    sales.to_pandas(columns=["amount"], filter=[("year", "=", 2024)])
    sales.sql("select region, sum(amount) from sales group by region")
    lakehub.datasets.create("daily", df, partition_by=["day"])

Reads go straight to the lake with your own keys through pyarrow, which prunes partitions and
columns first; ``sql`` runs DuckDB over the same scan, streaming, so a dataset larger than memory
is aggregated without being loaded whole.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from lakehub import tables
from lakehub.client import LakeHubError, default

if TYPE_CHECKING:
    from lakehub.client import Client


def _client(client: Client | None) -> Client:
    return default(client)


def _need(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{extra} needs the '{module.split('.')[0]}' package in this "
            "environment: pip install " + module.split(".")[0]
        ) from None


_NOTED: set[tuple[str, str]] = set()  # (MLflow run, dataset) already recorded as an input


class Dataset:
    """A catalogued dataset: its description, and ways to read it."""

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self._client = client
        self.info = info
        self.name: str = info["name"]
        self.ref: str = info["ref"]  # owner/name: the same dataset whoever has one so called
        self.path: str = info["path"]
        self.format: str = info["format"]
        self.partitioning: builtins.list[str] = info["partitioning"]
        self.schema: builtins.list[dict[str, str]] = info["schema"]
        self.row_count: int | None = info["row_count"]
        self._fs: Any = None

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, {self.path}, {self.format}, rows={self.row_count}, "
            f"partitioning={self.partitioning})"
        )

    @property
    def filesystem(self) -> Any:
        """pyarrow's S3 filesystem with your keys."""
        if self._fs is None:
            c = self._client.lake.credentials()
            self._fs = tables.s3_filesystem(c.endpoint_url, c.access_key_id, c.secret_access_key)
        return self._fs

    def arrow_dataset(self) -> Any:
        """The pyarrow Dataset: lazy, partition-aware, for scanners of your own."""
        self._note_read()
        return tables.open_dataset(
            self.filesystem,
            self.info["bucket"],
            self.info["prefix"],
            self.format,
            self.partitioning,
        )

    def to_arrow(self, columns: builtins.list[str] | None = None, filter: Any = None) -> Any:
        """A pyarrow Table of the chosen columns and rows; ``filter`` is a pyarrow expression
        or pandas-style ``[("year", "=", 2024), ("month", "in", [1, 2])]``."""
        return self.arrow_dataset().to_table(columns=columns, filter=tables.to_filter(filter))

    def to_pandas(self, columns: builtins.list[str] | None = None, filter: Any = None) -> Any:
        return self.to_arrow(columns, filter).to_pandas()

    def to_polars(
        self, columns: builtins.list[str] | None = None, filter: Any = None, lazy: bool = False
    ) -> Any:
        """A polars DataFrame, or with ``lazy=True`` a LazyFrame that pushes work into the scan."""
        pl = _need("polars", "to_polars()")
        if lazy:
            frame = pl.scan_pyarrow_dataset(self.arrow_dataset())
            return frame.select(columns) if columns else frame
        return pl.from_arrow(self.to_arrow(columns, filter))

    def to_dask(self, columns: builtins.list[str] | None = None, filter: Any = None) -> Any:
        """A Dask DataFrame with one partition per file (files outside ``filter`` skipped)."""
        dd = _need("dask.dataframe", "to_dask()")
        expr = tables.to_filter(filter)
        data = self.arrow_dataset()
        paths = [f.path for f in data.get_fragments(filter=expr)]
        if not paths:
            raise LakeHubError(0, f"no files of {self.name!r} match {filter!r}")
        c = self._client.lake.credentials()
        reader = _FileReader(
            (c.endpoint_url, c.access_key_id, c.secret_access_key),
            self.info["bucket"],
            self.info["prefix"],
            self.format,
            self.partitioning,
            columns,
            expr,
            data.schema,
        )
        meta = data.schema.empty_table().select(columns or data.schema.names).to_pandas()
        return dd.from_map(reader, paths, meta=meta, enforce_metadata=False)

    def sql(self, query: str, output: str = "pandas") -> Any:
        """Run DuckDB SQL where the dataset is the table named after it (and ``data``).

        The scan streams from the lake with column and partition pruning, so aggregates over
        data larger than memory work. ``output``: pandas, arrow or polars.
        """
        duckdb = _need("duckdb", "sql()")
        con = duckdb.connect()
        try:
            data = self.arrow_dataset()
            con.register(self.name, data)
            if self.name != "data":
                con.register("data", data)
            rel = con.sql(query)
            if rel is None:
                return None
            if output == "arrow":
                return rel.fetch_arrow_table()
            if output == "polars":
                return rel.pl()
            return rel.df()
        finally:
            con.close()

    def head(self, n: int = 10) -> Any:
        return tables.head(self.arrow_dataset(), n).to_pandas()

    def _note_read(self) -> None:
        """With MLflow in use and a run active, the run records this dataset as an input: its
        ref and its state now (when it last changed, rows, bytes), so a model registered from the
        run names what it was trained on. MLflow is never imported here; lineage never breaks a
        read (a failure to record it is logged)."""
        mlflow: Any = sys.modules.get("mlflow")
        run = mlflow.active_run() if mlflow is not None else None
        if run is None or (run.info.run_id, self.ref) in _NOTED:
            return
        try:
            from mlflow.entities import Dataset as Logged
            from mlflow.entities import DatasetInput, InputTag

            state = {k: self.info.get(k) for k in ("updated_at", "row_count", "size_bytes")}
            logged = Logged(
                name=self.ref,
                digest=hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16],
                source_type="lakehub",
                source=json.dumps({"path": self.path, **state}),
                schema=json.dumps({"lakehub": self.schema}),
            )
            tags = [InputTag("mlflow.data.context", "lakehub")]
            mlflow.MlflowClient().log_inputs(run.info.run_id, [DatasetInput(logged, tags)])
            _NOTED.add((run.info.run_id, self.ref))
        except Exception as err:  # the read goes on; the run lacks this input
            logging.getLogger("lakehub").warning("could not tell MLflow of %s: %s", self.ref, err)

    def refresh(self) -> Dataset:
        """Look at the files again (new partitions, more rows) and return the new description."""
        return Dataset(
            self._client, self._client.request("POST", f"/api/datasets/{self.ref}/refresh")
        )


class _FileReader:
    """Reads one file of a dataset on a Dask worker (picklable: keys, not clients)."""

    def __init__(
        self,
        keys: tuple[str, str, str],
        bucket: str,
        prefix: str,
        fmt: str,
        partitioning: builtins.list[str],
        columns: Any,
        expr: Any,
        schema: Any,
    ) -> None:
        self.keys, self.bucket, self.prefix, self.fmt = keys, bucket, prefix, fmt
        self.partitioning, self.columns, self.expr = partitioning, columns, expr
        self.schema = schema  # the whole dataset's: a file lacking a field reads it as null

    def __call__(self, path: str) -> Any:
        fs = tables.s3_filesystem(*self.keys)
        data = tables.open_dataset(
            fs, self.bucket, self.prefix, self.fmt, self.partitioning, [_Info(path)], self.schema
        )
        return data.to_table(columns=self.columns, filter=self.expr).to_pandas()


class _Info:
    def __init__(self, path: str) -> None:
        self.path = path


def get(name: str, client: Client | None = None) -> Dataset:
    """``name`` is yours, or the only one of that name you can read; ``owner/name`` is
    another's."""
    c = _client(client)
    return Dataset(c, c.request("GET", f"/api/datasets/{name}"))


def search(
    q: str = "", tag: str = "", column: str = "", client: Client | None = None
) -> builtins.list[Dataset]:
    """Datasets you can read whose name, description, tags or columns match."""
    c = _client(client)
    found = c.request("GET", "/api/datasets", params={"q": q, "tag": tag, "column": column})
    return [Dataset(c, info) for info in found]


def list(client: Client | None = None) -> builtins.list[Dataset]:  # noqa: A001
    return search(client=client)


def register(
    name: str,
    path: str,
    format: str = "parquet",
    *,
    partitioning: builtins.list[str] | None = None,
    description: str = "",
    tags: builtins.list[str] | tuple[str, ...] = (),
    lineage: str = "",
    client: Client | None = None,
) -> Dataset:
    """Catalogue files already in the lake; LakeHub infers schema, partitions, rows and size."""
    c = _client(client)
    body = {
        "name": name,
        "path": path,
        "format": format,
        "partitioning": partitioning,
        "description": description,
        "tags": builtins.list(tags),
        "lineage": lineage,
    }
    return Dataset(c, c.request("POST", "/api/datasets", json=body))


def create(
    name: str,
    data: Any,
    partition_by: builtins.list[str] | None = None,
    *,
    path: str | None = None,
    description: str = "",
    tags: builtins.list[str] | tuple[str, ...] = (),
    lineage: str = "",
    client: Client | None = None,
) -> Dataset:
    """Write a dataframe (pandas, polars or pyarrow) as hive-partitioned Parquet and register it.

    The default place is ``s3://<you>-home/datasets/<name>/``. Nothing is overwritten: a taken
    name or a non-empty folder is refused before writing, and files written for a registration
    that then fails are removed again.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    c = _client(client)
    try:
        c.request("GET", f"/api/datasets/{c.me()['name']}/{name}")
        raise LakeHubError(409, f"you already have a dataset {name!r}")
    except LakeHubError as err:
        if err.status != 404:
            raise
    creds = c.lake.credentials()
    bucket, prefix = tables.split_path(path or f"s3://{creds.bucket}/datasets/{name}")
    fs = tables.s3_filesystem(creds.endpoint_url, creds.access_key_id, creds.secret_access_key)
    if tables.list_files(fs, bucket, prefix):
        raise LakeHubError(409, f"s3://{bucket}/{prefix}/ already holds files: choose another path")
    table = _as_arrow(data, pa)
    missing = [k for k in partition_by or [] if k not in table.schema.names]
    if missing:
        raise LakeHubError(400, f"no column {missing[0]!r} to partition by")
    base = f"{bucket}/{prefix}"
    try:
        pads.write_dataset(
            table,
            base,
            filesystem=fs,
            format="parquet",
            partitioning=partition_by or None,
            partitioning_flavor="hive" if partition_by else None,
            basename_template="part-{i}.parquet",
            existing_data_behavior="overwrite_or_ignore",
        )
        return register(
            name,
            f"s3://{base}",
            "parquet",
            partitioning=partition_by or [],
            description=description,
            tags=tags,
            lineage=lineage,
            client=c,
        )
    except BaseException:
        fs.delete_dir_contents(base, missing_dir_ok=True)
        raise


def _as_arrow(data: Any, pa: Any) -> Any:
    if isinstance(data, pa.Table):
        return data
    if hasattr(data, "to_arrow"):  # polars
        return data.to_arrow()
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # pandas
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"cannot write a {type(data).__name__}: pass pandas, polars or pyarrow data")
