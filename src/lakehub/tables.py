"""Lake paths as tables: one way to open a catalogued path, shared by the catalog and the SDK.

Everything reads through pyarrow's own S3 client with the caller's keys, so the lake decides
what can be read, and pyarrow prunes partitions and columns before any byte is fetched.

A Parquet path holding ``_common_metadata`` (a footer with no rows: the schema of the whole
path) is read with that schema: every field any file has, with one type each, files lacking a
field reading it as null and older files cast to a field's newer type. Record streams keep one
up to date (see :mod:`lakehub.server.ingest.schema`); without one, the first file's schema is taken.
Imports are lazy: the SDK must load in a notebook environment in milliseconds.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

FORMATS = ("parquet", "csv", "jsonl", "zarr", "raw")
TABULAR = ("parquet", "csv", "jsonl")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PART_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
SCHEMA_FILE = "_common_metadata"


class TableError(ValueError):
    """A path, format or file that cannot be read as asked; the message is for people."""


def split_path(path: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` (or ``bucket/some/prefix``) -> (bucket, "some/prefix")."""
    raw = path.strip()
    if raw.startswith("s3://"):
        raw = raw[5:]
    elif "://" in raw:
        raise TableError(f"not a lake path: {path!r} (use s3://bucket/prefix)")
    bucket, _, prefix = raw.partition("/")
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise TableError(f"invalid bucket name {bucket!r} in {path!r}")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts) or any(ord(c) < 32 for c in prefix):
        raise TableError(f"invalid path {path!r}: no '.', '..' or control characters")
    return bucket, "/".join(parts)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise TableError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def s3_filesystem(
    endpoint_url: str, access_key: str, secret_key: str, region: str = "us-east-1"
) -> Any:
    """pyarrow's native S3 client (fast, no fsspec in the way) for one set of keys."""
    from pyarrow import fs

    url = urlsplit(endpoint_url)
    return fs.S3FileSystem(
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        endpoint_override=url.netloc,
        scheme=url.scheme or "http",
        connect_timeout=10,
        request_timeout=60,
    )


def list_files(fs: Any, bucket: str, prefix: str) -> list[Any]:
    """Every data file under the prefix (pyarrow FileInfo), skipping ``_*`` and ``.*`` names."""
    return listing(fs, bucket, prefix)[0]


def listing(fs: Any, bucket: str, prefix: str) -> tuple[list[Any], Any]:
    """The data files under the prefix, and the prefix's :data:`SCHEMA_FILE` (None if none)."""
    from pyarrow import fs as pafs

    base = f"{bucket}/{prefix}".rstrip("/")
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as err:
        raise TableError(s3_reason(err, f"s3://{base}")) from None
    if not infos:  # perhaps the path is one file
        one = fs.get_file_info(base)
        infos = [one] if one.type == pafs.FileType.File else []
    meta = next((i for i in infos if i.path == f"{base}/{SCHEMA_FILE}"), None)
    return sorted(
        (i for i in infos if i.type == pafs.FileType.File and not _hidden(i.path, base)),
        key=lambda i: i.path,
    ), meta


def stored_schema(fs: Any, meta: Any) -> Any:
    """The schema in a :data:`SCHEMA_FILE` (a FileInfo from :func:`listing`), or None."""
    if meta is None:
        return None
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(meta.path, filesystem=fs)
    except OSError as err:
        raise TableError(s3_reason(err, f"s3://{meta.path}")) from None
    except Exception:  # not a Parquet footer: the path's own files decide, as without one
        return None


def _hidden(path: str, base: str) -> bool:
    rel = path[len(base) :].lstrip("/") or path.rsplit("/", 1)[-1]
    return any(part.startswith(("_", ".")) and "=" not in part for part in rel.split("/"))


def s3_reason(err: OSError, where: str) -> str:
    text = str(err)
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "403" in text:
        return f"access denied to {where}"
    if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
        return f"no such bucket: {where}"
    return f"cannot read {where}: {text.splitlines()[0][:300]}"


def hive_keys(files: list[Any], base: str) -> list[str]:
    """The ``key=value`` folder names every file shares, in order (empty if they disagree)."""
    found: list[str] | None = None
    for info in files:
        rel = info.path[len(base) :].strip("/").split("/")[:-1]
        keys = [m.group(1) for m in map(_PART_RE.match, rel) if m]
        if found is None:
            found = keys
        elif keys != found:
            return []
    return found or []


def partition_values(files: list[Any], base: str, keys: list[str]) -> dict[str, list[str]]:
    values: dict[str, set[str]] = {k: set() for k in keys}
    for info in files:
        rel = info.path[len(base) :].strip("/").split("/")[:-1]
        seen: dict[str, str] = {m.group(1): m.group(2) for m in map(_PART_RE.match, rel) if m}
        missing = [k for k in keys if k not in seen]
        if missing:
            raise TableError(
                f"{info.path} is not inside {'/'.join(k + '=' for k in missing)} folders"
            )
        for k in keys:
            values[k].add(seen[k])
    return {k: sorted(v) for k, v in values.items()}


def arrow_format(fmt: str) -> Any:
    import pyarrow.dataset as ds

    if fmt == "parquet":
        # no pre-buffering of whole files: a scan then holds a few row groups, not a few files,
        # which is what keeps a DuckDB aggregate over data larger than memory inside its budget
        options = ds.ParquetFragmentScanOptions(pre_buffer=False)
        return ds.ParquetFileFormat(default_fragment_scan_options=options)
    if fmt == "csv":
        return ds.CsvFileFormat()
    if fmt == "jsonl":
        return ds.JsonFileFormat()
    raise TableError(f"{fmt} data is not a table: open it with its own library")


def open_dataset(
    fs: Any,
    bucket: str,
    prefix: str,
    fmt: str,
    partitioning: list[str],
    files: list[Any] | None = None,
    schema: Any = None,
) -> Any:
    """A pyarrow Dataset over the path; ``partitioning`` names its hive folders, in order.

    ``schema``: the path's stored schema (:func:`stored_schema`) when ``files`` are given;
    without ``files`` the path is listed and its stored schema read here.
    """
    import pyarrow.dataset as ds

    base = f"{bucket}/{prefix}".rstrip("/")
    if files is None:
        files, meta = listing(fs, bucket, prefix)
        schema = stored_schema(fs, meta) if fmt == "parquet" else None
    paths = [f.path for f in files]
    if not paths:
        raise TableError(f"no {fmt} files under s3://{base}/")
    part = ds.partitioning(flavor="hive") if partitioning else None
    try:
        args = {
            "filesystem": fs,
            "format": arrow_format(fmt),
            "partitioning": part,
            "partition_base_dir": base,
        }
        data = ds.dataset(paths, **args)  # the first file's schema, and the partition keys'
        return (
            data
            if schema is None
            else ds.dataset(paths, schema=with_extras(schema, data.schema), **args)
        )
    except OSError as err:
        raise TableError(s3_reason(err, f"s3://{base}/")) from None
    except Exception as err:  # pyarrow: ArrowInvalid and friends, for a file that is not fmt
        raise TableError(f"cannot read s3://{base}/ as {fmt}: {str(err).splitlines()[0]}") from None


def with_extras(stored: Any, found: Any) -> Any:
    """The stored schema, then the fields only ``found`` has (partition keys, or fields of files
    written without the stored schema knowing them)."""
    import pyarrow as pa

    names = set(stored.names)
    return pa.schema([*stored, *(f for f in found if f.name not in names)])


def head(data: Any, n: int, columns: list[str] | None = None) -> Any:
    """The first ``n`` rows, reading one file and one batch at a time (the default scanner reads
    several whole files ahead, hundreds of MiB for a first glance)."""
    scanner = data.scanner(
        columns=columns, batch_size=max(n, 1024), batch_readahead=1, fragment_readahead=1
    )
    return scanner.head(n)


def to_filter(filters: Any) -> Any:
    """A pyarrow expression from one, or from pandas-style ``[("year", "=", 2024), ...]``."""
    if filters is None or not isinstance(filters, list | tuple):
        return filters
    import pyarrow.parquet as pq

    return pq.filters_to_expression(list(filters))
