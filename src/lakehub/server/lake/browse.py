"""Browsing the lake for the portal, always with the *user's own* keys: the lake decides.

Nothing here holds data for long: listings are capped, previews read a bounded head of an
object, downloads are presigned URLs that go straight to the lake.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

MAX_ENTRIES = 1000
PREVIEW_BYTES = 64 * 1024
PARQUET_PREVIEW_MAX = 64 * 1024 * 1024
TEXT = (".txt", ".md", ".log", ".py", ".yaml", ".yml", ".toml", ".ini", ".sql", ".xml", ".html")
IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
ACTIVE = (".html", ".htm", ".xhtml", ".shtml", ".xml", ".xsl", ".js", ".mjs")  # run in a browser


@dataclass
class Listing:
    bucket: str
    prefix: str
    folders: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


@dataclass
class Preview:
    kind: str  # text | table | image | none
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""


def listing(s3: Any, bucket: str, prefix: str) -> Listing:
    out = Listing(bucket, prefix)
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    )
    for page in pages:
        out.folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        out.files += [
            {"key": o["Key"], "size": o["Size"], "modified": o["LastModified"]}
            for o in page.get("Contents", [])
            # a folder's own marker (an empty "name/" object) is the folder, not a file in it
            if not (o["Key"].endswith("/") and o["Size"] == 0)
        ]
        if len(out.folders) + len(out.files) >= MAX_ENTRIES:
            out.truncated = True
            break
    return out


def head(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    meta: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
    return {
        "size": meta["ContentLength"],
        "type": meta.get("ContentType", ""),
        "modified": meta["LastModified"],
        "etag": meta.get("ETag", "").strip('"'),
        "metadata": meta.get("Metadata", {}),
    }


def preview(s3: Any, bucket: str, key: str, size: int) -> Preview:
    name = key.lower()
    if name.endswith(IMAGES):
        return Preview("image")
    if name.endswith(".parquet"):
        return _parquet(s3, bucket, key, size)
    if not name.endswith((*TEXT, ".csv", ".tsv", ".json", ".jsonl", ".ndjson")):
        return Preview("none", note="no preview for this kind of file")
    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{PREVIEW_BYTES - 1}")
    text = body["Body"].read().decode("utf-8", errors="replace")
    cut = size > PREVIEW_BYTES
    note = f"first {PREVIEW_BYTES // 1024} KiB of {size} bytes" if cut else ""
    if name.endswith((".csv", ".tsv")):
        lines = text.splitlines()
        lines = (lines[:-1] if cut else lines)[:21]  # a header and 20 rows, no partial line
        reader = csv.reader(lines, delimiter="\t" if name.endswith(".tsv") else ",")
        rows = list(reader)
        if rows:
            return Preview("table", columns=rows[0], rows=rows[1:], note=note)
    if name.endswith(".json") and not cut:
        try:
            text = json.dumps(json.loads(text), indent=2)[:PREVIEW_BYTES]
        except ValueError:
            note = "not valid JSON"
    return Preview("text", text=text, note=note)


def _parquet(s3: Any, bucket: str, key: str, size: int) -> Preview:
    if size > PARQUET_PREVIEW_MAX:
        return Preview("none", note="too large to preview here: open it from a notebook")
    import pyarrow.parquet as pq

    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        table = next(pf.iter_batches(batch_size=20), None)
    except Exception as err:  # corrupt or not Parquet at all
        return Preview("none", note=f"cannot read this Parquet file: {err}")
    if table is None:
        return Preview("table", columns=pf.schema_arrow.names, note="no rows")
    rows = [list(r.values()) for r in table.to_pylist()]
    note = f"{pf.metadata.num_rows} rows; first {len(rows)} shown"
    return Preview("table", columns=table.schema.names, rows=rows, note=note)


def download_url(s3: Any, bucket: str, key: str, seconds: int = 300) -> str:
    """A presigned GET whose answer the lake marks ``attachment`` (a browser saves it rather than
    showing it on the lake's origin, which is same-site with the portal); active types (HTML,
    XML, JavaScript) are also sent as ``application/octet-stream``. SVG keeps its type, for the
    portal's ``<img>`` preview, where its scripts do not run."""
    name = key.rsplit("/", 1)[-1] or "download"
    params = {
        "Bucket": bucket,
        "Key": key,
        "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(name)}",
    }
    if key.lower().endswith(ACTIVE):
        params["ResponseContentType"] = "application/octet-stream"
    url: str = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)
    return url
