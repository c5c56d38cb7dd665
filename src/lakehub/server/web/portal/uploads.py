"""Portal uploads in parts: start, send parts, complete or cancel, with the user's own keys.

Same guard as every portal POST (the session cookie and a same-origin check), and each call
demands a content type a cross-site form cannot send without the browser asking first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from lakehub.server.lake import upload as area
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import user_s3

router = APIRouter(prefix="/browse/{bucket}/uploads", include_in_schema=False)
T = TypeVar("T")


def _typed(kind: str) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        if request.headers.get("content-type", "").split(";")[0].strip() != kind:
            raise HTTPException(415, f"send this as {kind}")

    return check


Json = Depends(_typed("application/json"))
Binary = Depends(_typed("application/octet-stream"))


class Start(BaseModel):
    key: str
    size: int = Field(ge=0)
    content_type: str = Field(default="", max_length=200)
    overwrite: bool = False


class Part(BaseModel):
    number: int
    etag: str


class Finish(BaseModel):
    key: str
    parts: list[Part] = Field(max_length=area.MAX_PARTS)


class Cancel(BaseModel):
    key: str


def _why(err: Any, bucket: str) -> tuple[int, str]:
    """The lake's refusal as an HTTP status and a sentence."""
    code = err.response.get("Error", {}).get("Code", "")
    reasons = {
        "AccessDenied": (403, f"You may not write to {bucket}."),
        "403": (403, f"You may not write to {bucket}."),
        "NoSuchBucket": (404, f"No bucket named {bucket}."),
        "NoSuchUpload": (404, "This upload was cancelled or has already finished."),
        "EntityTooSmall": (400, "Every part but the last must be at least 5 MiB."),
        "InvalidPart": (400, "A part is missing or does not match what was sent."),
        "InvalidPartOrder": (400, "Parts must be listed in order."),
    }
    return reasons.get(code, (502, f"the lake answered: {code or err}"))


async def _lake(state: Any, bucket: str, fn: Callable[..., T], *args: Any) -> T:
    from botocore.exceptions import ClientError

    try:
        return await state.run(fn, *args)
    except area.UploadError as err:
        raise HTTPException(err.status, str(err)) from None
    except ClientError as err:
        raise HTTPException(*_why(err, bucket)) from None


@router.post("", dependencies=[Json])
async def start(bucket: str, body: Start, who: Browser, state: State) -> dict[str, Any]:
    """Begin an upload of ``body.size`` bytes to ``bucket/key``; the part size to use."""
    try:
        size = area.part_size(body.size)
        area.check_key(body.key)
    except area.UploadError as err:
        raise HTTPException(err.status, str(err)) from None
    s3 = await user_s3(state, who)
    upload_id = await _lake(
        state, bucket, area.start, s3, bucket, body.key, body.content_type, body.overwrite
    )
    return {"upload_id": upload_id, "key": body.key, "part_size": size}


@router.post("/{upload_id}/parts/{number}", dependencies=[Binary])
async def part(
    bucket: str, upload_id: str, number: int, key: str, request: Request, who: Browser, state: State
) -> dict[str, str]:
    """Store one part (the request body, at most MAX_PART bytes); its ETag."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > area.MAX_PART:
        raise HTTPException(413, f"a part may be at most {area.MAX_PART} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > area.MAX_PART:
            raise HTTPException(413, f"a part may be at most {area.MAX_PART} bytes")
    s3 = await user_s3(state, who)
    etag = await _lake(
        state, bucket, area.put_part, s3, bucket, key, upload_id, number, bytes(data)
    )
    return {"etag": etag}


@router.post("/{upload_id}/complete", dependencies=[Json])
async def complete(
    bucket: str, upload_id: str, body: Finish, who: Browser, state: State
) -> dict[str, Any]:
    s3 = await user_s3(state, who)
    parts = [(p.number, p.etag) for p in body.parts]
    size = await _lake(state, bucket, area.complete, s3, bucket, body.key, upload_id, parts)
    return {"key": body.key, "size": size}


@router.post("/{upload_id}/abort", dependencies=[Json])
async def abort(
    bucket: str, upload_id: str, body: Cancel, who: Browser, state: State
) -> dict[str, str]:
    s3 = await user_s3(state, who)
    await _lake(state, bucket, area.abort, s3, bucket, body.key, upload_id)
    return {"detail": f"cancelled the upload of {body.key}"}
