"""The HTTP receiver: ``POST /<tag>`` with a source token, as fluentd's and fluent-bit's http
outputs send it.

Auth: ``Authorization: Bearer <token>`` (or ``token <token>``), or Basic auth with the token as
password (fluent-bit's ``http_user``/``http_passwd``). Bodies by ``Content-Type``: JSON (an
object or an array of objects), NDJSON (``application/x-ndjson``, ``application/jsonl``), CSV
with a header line (``text/csv``), msgpack (``application/msgpack``: maps, ``[time, map]`` or
``[[time, meta], map]``) and, for raw streams, anything as bytes. ``X-Chunk-Id`` or
``Idempotency-Key`` makes a retried request count once. ``Content-Encoding: gzip`` bodies are
inflated up to the source's message limit (a larger one is refused with 413, never half read).
The answer comes after the body is fsynced: 200; a refusal is a 4xx/503 with
``{"detail": ...}`` and a log line.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
from typing import Any

import msgpack
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lakehub.server.ingest.base import Fmt, Refused, Source, gunzip, json_loads
from lakehub.server.ingest.intake import Intake

log = logging.getLogger("lakehub.server.ingest.http")
FORMATS = {
    "application/json": Fmt.JSON,
    "application/x-ndjson": Fmt.NDJSON,
    "application/ndjson": Fmt.NDJSON,
    "application/jsonl": Fmt.NDJSON,
    "application/json-lines": Fmt.NDJSON,
    "application/x-jsonlines": Fmt.NDJSON,
    "text/csv": Fmt.CSV,
    "application/csv": Fmt.CSV,
    "application/msgpack": Fmt.MSGPACK_RECORDS,
    "application/x-msgpack": Fmt.MSGPACK_RECORDS,
    "application/octet-stream": Fmt.RAW,
}


def _token(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            pass
    raise Refused("send the source's token: 'Authorization: Bearer <token>'", 401)


async def _body(request: Request, source: Source) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > source.max_message_bytes:
        raise Refused(
            f"body of {declared} bytes is larger than source {source.name!r} allows "
            f"({source.max_message_bytes})",
            413,
        )
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > source.max_message_bytes:
            raise Refused(
                f"body larger than source {source.name!r} allows "
                f"({source.max_message_bytes} bytes)",
                413,
            )
        parts.append(part)
    return b"".join(parts)


class _Object(msgspec.Struct):
    """Any JSON object: its members are scanned (checked) and dropped, none is built."""


_SCAN = msgspec.json.Decoder(list[_Object])


def _scanned(text: bytes) -> int | None:
    """The number of objects in ``text`` when it is a JSON array of objects in UTF-8, found
    without building them (a fourth of a full parse's time); None when the scan refuses it
    (then the full parse decides, with its message). Every text counted here is one the lake
    writer's parse (:func:`lakehub.server.ingest.base.json_loads`) reads as such an array: the
    scan is the stricter (no NaN, no integer beyond 64 bits, nothing nested past its depth)."""
    try:
        text.decode("utf-8")  # the scan does not check the bytes inside strings
        return len(_SCAN.decode(text))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def check(fmt: Fmt, body: bytes) -> int:
    """Cheap validation of a structured body; returns the number of records."""
    array = body.strip()  # a copy of the body: made once
    if not array:
        raise Refused("empty body")
    if fmt in (Fmt.JSON, Fmt.NDJSON):
        if fmt == Fmt.NDJSON:  # the lines joined as the lake writer joins them (a blank line
            array = b"[" + array.replace(b"\n", b",") + b"]"  # is not read here, but below)
        elif array.startswith(b"{"):
            array = b"[" + array + b"]"
        found = _scanned(array)
        if found is not None:
            return found
    if fmt == Fmt.JSON:
        try:
            doc = json_loads(body)
        except ValueError as err:
            raise Refused(f"invalid JSON: {err}") from None
        except RecursionError:  # the standard parser, after orjson refused more than 1024 levels
            raise Refused("JSON nested too deeply") from None
        docs = doc if isinstance(doc, list) else [doc]
        if not all(type(d) is dict for d in docs):
            raise Refused("JSON bodies are an object or an array of objects")
        return len(docs)
    if fmt == Fmt.NDJSON:
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        try:
            docs = json_loads(b"[" + b",".join(lines) + b"]")
        except (ValueError, RecursionError):
            for i, ln in enumerate(lines, 1):
                try:
                    json_loads(ln)
                except ValueError as err:
                    raise Refused(f"invalid JSON on line {i}: {err}") from None
                except RecursionError:
                    raise Refused(f"JSON on line {i} nested too deeply") from None
            raise Refused("invalid NDJSON") from None
        if not all(type(d) is dict for d in docs):
            raise Refused("each NDJSON line must be an object")
        return len(docs)
    if fmt == Fmt.CSV:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("CSV must be UTF-8") from None
        rows = [ln for ln in text.splitlines() if ln.strip()]
        return len(rows) - 1
    if fmt == Fmt.MSGPACK_RECORDS:
        n = 0
        try:
            for obj in _objects(body):
                if not (
                    isinstance(obj, dict)
                    or (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[1], dict))
                ):
                    raise Refused("msgpack bodies hold maps, [time, map] or [[time, meta], map]")
                n += 1
        except (ValueError, msgpack.UnpackValueError, msgpack.ExtraData) as err:
            raise Refused(f"malformed msgpack: {err}") from None
        return n
    return 1


def _objects(body: bytes) -> Any:
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(body)
    end = 0
    for obj in u:
        end = u.tell()
        yield obj
    if end != len(body):
        raise ValueError("truncated msgpack")


def metrics_page(intake: Intake) -> bytes:
    """The receivers' buffer in Prometheus text format: ``lakehub_ingest_buffer_bytes`` (held
    on disk, not in the lake yet), ``lakehub_ingest_buffer_max_bytes`` (the bound), per stream
    ``lakehub_ingest_pending_bytes{user,stream}`` and ``lakehub_ingest_parked_bytes`` (what its
    failing sink parked), and this process's own figures."""
    from prometheus_client import REGISTRY, generate_latest

    log_ = intake.log
    lines = [
        "# TYPE lakehub_ingest_buffer_bytes gauge",
        f"lakehub_ingest_buffer_bytes {log_.held()}",
        "# TYPE lakehub_ingest_buffer_max_bytes gauge",
        f"lakehub_ingest_buffer_max_bytes {log_.max_held}",
    ]
    pending, parked = ["# TYPE lakehub_ingest_pending_bytes gauge"], []
    parked.append("# TYPE lakehub_ingest_parked_bytes gauge")
    for sid, st in sorted(intake.streams.items()):
        labels = f'{{user="{st.owner}",stream="{st.name}"}}'  # names are [a-z0-9-]: no escaping
        pending.append(f"lakehub_ingest_pending_bytes{labels} {log_.in_log(sid)}")
        parked.append(f"lakehub_ingest_parked_bytes{labels} {log_.parked(sid)[0]}")
    return "\n".join([*lines, *pending, *parked, ""]).encode() + generate_latest(REGISTRY)


def app(intake: Intake, metrics_token: str = "") -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "held_bytes": intake.log.held()})

    async def metrics(request: Request) -> Response:
        given = request.headers.get("authorization", "").partition(" ")[2].strip()
        if not (metrics_token and hmac.compare_digest(given.encode(), metrics_token.encode())):
            return JSONResponse({"detail": "the metrics token only"}, 403)
        return Response(metrics_page(intake), media_type="text/plain; version=0.0.4")

    async def post(request: Request) -> Response:
        tag = request.path_params["tag"].strip("/").replace("/", ".")
        stream = None
        try:
            source = intake.by_token(_token(request))  # the registry's stamp read here
            stream = intake.route(source, tag, read=False)
            ctype = request.headers.get("content-type", "application/octet-stream")
            ctype = ctype.split(";")[0].strip().lower()
            fmt = FORMATS.get(ctype, Fmt.RAW)
            body = await _body(request, source)
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding in ("gzip", "x-gzip"):  # inflated within the source's limit, or refused
                try:
                    body = gunzip(body, source.max_message_bytes)
                except ValueError as err:
                    raise Refused(f"Content-Encoding gzip: {err}") from None
            elif encoding != "identity":
                raise Refused(
                    f"Content-Encoding {encoding!r} is not taken: send gzip or nothing", 415
                )
            if stream.kind == "raw":
                fmt, records = Fmt.RAW, 0
            elif fmt == Fmt.RAW:
                raise Refused(
                    f"stream {stream.name!r} takes records: send JSON, NDJSON, CSV or "
                    f"msgpack, not {ctype}",
                    415,
                )
            else:
                records = check(fmt, body)
            wait = intake.throttle(source, len(body))
            if wait:
                raise Refused(
                    f"source {source.name!r} is over its rate of "
                    f"{source.max_bytes_per_s} bytes/s: retry in {math.ceil(wait)} s",
                    429,
                    retry_after=math.ceil(wait),
                )
            chunk = request.headers.get("x-chunk-id") or request.headers.get("idempotency-key")
            fresh = await intake.submit(source, stream, fmt, tag, body, (chunk or "")[:200])
        except Refused as err:
            where = request.client.host if request.client else "?"
            log.warning("%s POST /%s refused (%d): %s", where, tag, err.status, err)
            intake.error(stream, str(err))
            headers = {"Retry-After": str(err.retry_after)} if err.status in (429, 503) else None
            return JSONResponse({"detail": str(err)}, err.status, headers=headers)
        return JSONResponse(
            {"stream": stream.name, "bytes": len(body), "records": records, "duplicate": not fresh}
        )

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/{tag:path}", post, methods=["POST", "PUT"]),
        ]
    )
